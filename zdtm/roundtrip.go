package zdtm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/critjson"
)

// RoundtripResult counts what Roundtrip did.
type RoundtripResult struct {
	Files   int `json:"files"`   // images put through JSON and back
	Skipped int `json:"skipped"` // pages files, logs and other non-images
}

// Roundtrip decodes every image of dir to crit JSON, encodes the JSON back and checks that the
// result is byte-identical to the original; the re-encoded bytes then replace the original (temp
// file + rename, mode kept), so that a following criu restore reads criukit's output. pages-*.img
// (memory, no JSON form), logs and files that are not CRIU images are left alone. The first
// difference is an error naming the file and the first differing offset; nothing is replaced
// after it.
func Roundtrip(dir string) (*RoundtripResult, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	res := &RoundtripResult{}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || skipName(name) {
			res.Skipped++
			continue
		}
		d, err := image.Classify(name)
		if err != nil || d.Raw == image.RawPages {
			res.Skipped++
			continue
		}
		p := filepath.Join(dir, name)
		orig, err := os.ReadFile(p)
		if err != nil {
			return res, err
		}
		out, err := jsonRoundtrip(orig, name)
		if err != nil {
			return res, fmt.Errorf("%s: %w", p, err)
		}
		if !bytes.Equal(out, orig) {
			return res, fmt.Errorf("%s: JSON round trip is not byte-exact: %s", p, firstDiff(orig, out))
		}
		fi, err := e.Info()
		if err != nil {
			return res, err
		}
		if err := replaceFile(p, out, fi.Mode().Perm()); err != nil {
			return res, err
		}
		res.Files++
	}
	return res, nil
}

// skipName: files scripts/zdtm and zdtm.py leave next to the images.
func skipName(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".log") || strings.HasSuffix(name, ".cropt") ||
		name == "criukit-cow.json"
}

func jsonRoundtrip(orig []byte, name string) ([]byte, error) {
	img, err := image.Decode(bytes.NewReader(orig), name)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	js, err := critjson.Marshal(img, critjson.Options{})
	if err != nil {
		return nil, fmt.Errorf("to JSON: %w", err)
	}
	back, err := critjson.Unmarshal(js, name)
	if err != nil {
		return nil, fmt.Errorf("from JSON: %w", err)
	}
	var buf bytes.Buffer
	if err := back.Encode(&buf); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return buf.Bytes(), nil
}

func firstDiff(a, b []byte) string {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at offset %d (%d bytes -> %d bytes)", i, len(a), len(b))
		}
	}
	return fmt.Sprintf("%d bytes -> %d bytes (one is a prefix of the other)", len(a), len(b))
}

func replaceFile(p string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".rt-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), p)
}
