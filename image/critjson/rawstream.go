package critjson

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"

	"github.com/criukit/criukit/image"
)

// MarshalRaw writes the JSON of a raw image (ifaddr, iptables, tmpfs tarballs...) read from r to w,
// streaming: the same bytes as Marshal, in constant memory whatever the size of the image.
func MarshalRaw(w io.Writer, name string, d *image.Desc, r io.Reader, o Options) error {
	if d == nil || d.Kind != image.KindRaw {
		return fmt.Errorf("%s: %w: not a raw image", name, ErrFormat)
	}
	shell, err := Marshal(&image.Image{Name: name, Desc: d}, o)
	if err != nil {
		return err
	}
	i := bytes.LastIndex(shell, []byte(`""`))
	if i < 0 {
		return fmt.Errorf("%s: raw JSON without a raw value", name)
	}
	if _, err := w.Write(shell[:i+1]); err != nil {
		return err
	}
	const line = 57 // Python's base64.encodebytes: 76 characters and a newline per 57 bytes
	in := make([]byte, 1024*line)
	out := make([]byte, 0, 1024*(76+2))
	for {
		n, rerr := io.ReadFull(r, in)
		out = out[:0]
		for b := in[:n]; len(b) > 0; {
			k := min(len(b), line)
			out = base64.StdEncoding.AppendEncode(out, b[:k])
			out = append(out, `\n`...)
			b = b[k:]
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	_, err = w.Write(shell[i+1:])
	return err
}
