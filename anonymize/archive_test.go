package anonymize

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/internal/harness"
	"github.com/criukit/criukit/internal/workload"
)

// podmanLike builds a container checkpoint archive the way podman/CRI-O lay it out, around a
// real CRIU dump: checkpoint/ (images and dump.log), config.dump, spec.dump, network.status and
// rootfs-diff.tar.
func podmanLike(t *testing.T, d *harness.Dump, gz bool) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "checkpoint.tar")
	if gz {
		p += ".gz"
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	tw := tar.NewWriter(w)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: int64(len(b)), Mode: 0o644})
		tw.Write(b)
	}
	tw.WriteHeader(&tar.Header{Name: "checkpoint/", Typeflag: tar.TypeDir, Mode: 0o755})
	ents, _ := os.ReadDir(d.Dir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(d.Dir, e.Name()))
		add("checkpoint/"+e.Name(), b)
	}
	lb, _ := os.ReadFile(d.Log)
	add("checkpoint/dump.log", lb)
	add("config.dump", []byte(`{"id":"3b2842cc58e4f0af3e3504e10e960e2c3b2842cc58e4f0af3e3504e10e960e2c","name":"payroll-db-alice",
		"rootfsImageName":"registry.corp.example/team/payroll:1.2","createdTime":"2026-01-02T03:04:05Z"}`))
	add("spec.dump", []byte(`{"ociVersion":"1.0.2","hostname":"payroll-host-7","process":{"args":["/usr/bin/payroll","--token","S3CRET-ARG-42"],
		"env":["PATH=/usr/bin","DB_PASSWORD=hunter2-archive-secret"],"cwd":"/srv/payroll-alice"},
		"mounts":[{"destination":"/data","type":"bind","source":"/home/alice/payroll-data","options":["rbind","rw"]}],
		"annotations":{"io.kubernetes.pod.name":"payroll-7d9f","io.kubernetes.pod.namespace":"finance-alice"}}`))
	add("network.status", []byte(`[{"interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:01:05"}],"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1"}]}]`))
	var rootfs bytes.Buffer
	rtw := tar.NewWriter(&rootfs)
	rtw.WriteHeader(&tar.Header{Name: "srv/payroll-alice/salaries.csv", Typeflag: tar.TypeReg, Size: 24, Mode: 0o600})
	rtw.Write([]byte("alice,250000,secret-row\n"))
	rtw.Close()
	add("rootfs-diff.tar", rootfs.Bytes())
	add("unknown-plugin.bin", []byte("opaque"))
	tw.Close()
	if zw != nil {
		zw.Close()
	}
	return p
}

// archiveMembers reads every member (nested tars too) of an archive.
func archiveMembers(t *testing.T, p string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var rd io.Reader = bytes.NewReader(b)
	if b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			t.Fatal(err)
		}
		rd = zr
	}
	out := map[string][]byte{}
	tr := tar.NewReader(rd)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		mb, _ := io.ReadAll(tr)
		out[h.Name] = mb
		if strings.HasSuffix(h.Name, ".tar") {
			ntr := tar.NewReader(bytes.NewReader(mb))
			for {
				nh, err := ntr.Next()
				if err != nil {
					break
				}
				nb, _ := io.ReadAll(ntr)
				out[h.Name+"//"+nh.Name] = nb
				out[h.Name+"//name:"+nh.Name] = []byte(nh.Name)
			}
		}
	}
}

func TestArchive(t *testing.T) {
	d := harness.CorpusDump(t, "files")
	for _, gz := range []bool{false, true} {
		in := podmanLike(t, d, gz)
		out := filepath.Join(t.TempDir(), filepath.Base(in))
		man, err := Run(in, out, Options{Level: Identity, Key: testKey})
		if err != nil {
			t.Fatalf("gz=%v: %v", gz, err)
		}
		ms := archiveMembers(t, out)
		if ob, _ := os.ReadFile(out); (ob[0] == 0x1f) != gz {
			t.Errorf("gz=%v: output compression differs from the input", gz)
		}
		for _, want := range []string{"checkpoint/files.img", "checkpoint/dump.log", "config.dump", "spec.dump", "network.status", "rootfs-diff.tar", "MANIFEST.json"} {
			if _, ok := ms[want]; !ok {
				t.Errorf("gz=%v: %s missing from the output archive", gz, want)
			}
		}
		if _, ok := ms["unknown-plugin.bin"]; ok {
			t.Error("unknown file copied through")
		}
		for name, b := range ms {
			for _, s := range []string{"payroll-db-alice", "hunter2-archive-secret", "S3CRET-ARG-42", "payroll-host-7", "finance-alice",
				"/home/alice", "10.244.1.5", "0a:58:0a:f4:01:05", "secret-row", "salaries", "3b2842cc58e4f0af", workload.DefaultSecret, harness.CorpusEnvSecret} {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("gz=%v: %q left in %s", gz, s, name)
				}
			}
		}
		if _, err := image.Decode(bytes.NewReader(ms["checkpoint/files.img"]), "files.img"); err != nil {
			t.Errorf("files.img does not decode: %v", err)
		}
		var spec map[string]any
		if err := json.Unmarshal(ms["spec.dump"], &spec); err != nil || spec["ociVersion"] != "1.0.2" {
			t.Errorf("spec.dump: %v %v", err, spec["ociVersion"])
		}
		if len(man.Dropped) == 0 {
			t.Error("the unknown file is not listed as dropped")
		}
	}
}

func FuzzJSONValue(f *testing.F) {
	f.Add(`{"env":["A=b"],"mounts":[{"source":"/home/x","type":"bind"}],"ip":"10.0.0.1/24","uid":1000,"mac":"02:00:00:00:00:01"}`)
	f.Add(`["a",1,true,null,{"x":["y"]}]`)
	f.Fuzz(func(t *testing.T, s string) {
		var v any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if dec.Decode(&v) != nil {
			return
		}
		r := testRun(t, Identity)
		out := r.jsonValue("", v)
		if _, err := json.Marshal(out); err != nil {
			t.Fatalf("output does not encode: %v", err)
		}
	})
}
