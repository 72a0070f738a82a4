package anonymize

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	remap_file_path "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/image"
	"github.com/criukit/criukit/image/nldump"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// verify checks the output in r.tmp: every image decodes, cross references resolve, and no
// dictionary value is left (raw bytes, tar members, decoded fields).
func (r *run) verify() error {
	v := &r.man.Verification
	v.DictionaryValues = r.d.Len()
	v.BinaryForms = r.bin.Len()
	ents, err := os.ReadDir(r.tmp)
	if err != nil {
		return err
	}
	out := map[string]*image.Image{}
	var problems []string
	leak := func(file, where string, h dict.Hit) {
		v.Leaks = append(v.Leaks, fmt.Sprintf("%s %s: %s value (%d bytes)", file, where, h.Entry.Kind, len(h.Entry.From)))
	}
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(r.tmp, name)
		isLog := strings.HasSuffix(name, ".log")
		d, cerr := image.Classify(name)
		isPages := cerr == nil && d.Kind == image.KindRaw && d.Raw == image.RawPages
		// raw byte scan (text forms everywhere; binary forms outside memory pages)
		scanText := r.lvl >= Identity || !isPages
		if n, done := r.pagesScanned[name]; done && isPages {
			v.ScannedBytes += n // scanned on the final bytes as they were written
		} else if scanText {
			if err := r.scanFile(path, name, !isPages && !isLog, leak); err != nil {
				return err
			}
		} else {
			v.NotScanned = append(v.NotScanned, name+": memory is kept at level "+r.lvl.String()+" (argv/env areas rewritten)")
		}
		if isLog || cerr != nil {
			continue
		}
		switch d.Kind {
		case image.KindProto, image.KindPagemap, image.KindGhost:
			img, err := image.ReadFile(path)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s does not decode: %v", name, err))
				continue
			}
			v.Decoded++
			out[name] = img
			if img.Desc.Name == "CORE" && r.lvl < Structure {
				d := r.d
				if r.lvl < Identity {
					d = r.sec
				}
				regLeaks(img, d, func(what string) { v.Leaks = append(v.Leaks, name+" "+what) })
			}
			for i, en := range img.Entries {
				r.scanFields(en.Msg.ProtoReflect(), func(where string, h dict.Hit) {
					leak(name, fmt.Sprintf("entry %d field %s", i, where), h)
				}, func(what string) {
					v.Leaks = append(v.Leaks, fmt.Sprintf("%s entry %d: %s", name, i, what))
				})
			}
		case image.KindRaw:
			switch d.Raw {
			case image.RawTarGz:
				if err := r.scanTar(path, name, leak); err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v", name, err))
				}
				v.Decoded++
			case image.RawIPDump:
				b, err := os.ReadFile(path)
				if err == nil {
					_, err = nldump.Parse(b)
				}
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v", name, err))
				}
				v.Decoded++
			case image.RawPages:
				st, err := e.Info()
				if err == nil && st.Size()%pageSize != 0 {
					problems = append(problems, fmt.Sprintf("%s: size %d is not a multiple of the page size", name, st.Size()))
				}
				v.Decoded++
			default:
				v.Decoded++
			}
		}
	}
	v.Leaks = append(v.Leaks, r.pagesLeaks...)
	problems = append(problems, r.crossRefs(out)...)
	sort.Strings(v.Leaks)
	if len(problems) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrVerify, strings.Join(problems, "\n  "))
	}
	if len(v.Leaks) > 0 {
		l := v.Leaks
		if len(l) > 20 {
			l = append(l[:20:20], fmt.Sprintf("... and %d more", len(v.Leaks)-20))
		}
		return fmt.Errorf("%w (nothing was written to the output; add --secret/--keep or report the case):\n  %s", ErrLeak, strings.Join(l, "\n  "))
	}
	return nil
}

func (r *run) scanFile(path, name string, binary bool, leak func(file, where string, h dict.Hit)) error {
	text := r.d
	if strings.HasSuffix(name, ".log") {
		text = r.dlog
	}
	for _, d := range []*dict.Dict{text, r.bin} {
		if d == r.bin && !binary || d.Len() == 0 {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		n := 0
		_, err = d.Stream(bufio.NewReader(f), nil, false, func(h dict.Hit) bool {
			leak(name, fmt.Sprintf("offset %d", h.Offset), h)
			n++
			return n < 5
		})
		if st, e := f.Stat(); e == nil && d == text {
			r.man.Verification.ScannedBytes += st.Size()
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("anonymize: scan %s: %w", name, err)
		}
	}
	return nil
}

func (r *run) scanTar(path, name string, leak func(file, where string, h dict.Hit)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %v", err)
		}
		r.man.Verification.TarMembers++
		member := fmt.Sprintf("member %d", r.man.Verification.TarMembers)
		for _, s := range []string{h.Name, h.Linkname, h.Uname, h.Gname} {
			r.d.Find([]byte(s), len(s), 0, func(hit dict.Hit) bool { leak(name, member+" name", hit); return false })
		}
		if r.lvl >= Identity && (r.changedUIDs[uint32(h.Uid)] || r.changedUIDs[uint32(h.Gid)]) {
			r.man.Verification.Leaks = append(r.man.Verification.Leaks, fmt.Sprintf("%s %s: original uid/gid", name, member))
		}
		if _, err := r.d.Stream(tr, nil, false, func(hit dict.Hit) bool {
			leak(name, fmt.Sprintf("%s offset %d", member, hit.Offset), hit)
			return false
		}); err != nil {
			return err
		}
	}
}

// scanFields checks decoded fields: strings/bytes against the dictionary, ipadd fields and uid
// fields against the original values that were mapped (varints: a byte scan cannot see them).
func (r *run) scanFields(m protoreflect.Message, leak func(string, dict.Hit), bad func(string)) {
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		r.man.Verification.FieldsChecked++
		name := string(f.FullName())
		switch {
		case f.Kind() == protoreflect.MessageKind:
			if f.IsList() {
				for i := 0; i < v.List().Len(); i++ {
					r.scanFields(v.List().Get(i).Message(), leak, bad)
				}
			} else if !f.IsMap() {
				r.scanFields(v.Message(), leak, bad)
			}
		case f.Kind() == protoreflect.StringKind || f.Kind() == protoreflect.BytesKind:
			each(f, v, func(x protoreflect.Value) {
				var b []byte
				if f.Kind() == protoreflect.StringKind {
					b = []byte(x.String())
				} else {
					b = x.Bytes()
				}
				for _, d := range []*dict.Dict{r.d, r.bin} {
					d.Find(b, len(b), 0, func(h dict.Hit) bool { leak(name, h); return false })
				}
			})
		case isIPAddField(f) && r.lvl >= Identity && f.IsList():
			l := v.List()
			if l.Len() == 1 || l.Len() == 4 {
				b := make([]byte, 4*l.Len())
				for i := 0; i < l.Len(); i++ {
					binary.LittleEndian.PutUint32(b[4*i:], uint32(l.Get(i).Uint()))
				}
				if a, ok := netip.AddrFromSlice(b); ok && r.changedIPs[a] {
					bad(fmt.Sprintf("field %s holds an original address", name))
				}
			}
		case uidFields[f.FullName()] && r.lvl >= Identity:
			each(f, v, func(x protoreflect.Value) {
				var id uint32
				switch f.Kind() {
				case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
					id = uint32(int32(x.Int()))
				default:
					id = uint32(x.Uint())
				}
				if r.changedUIDs[id] && !r.mappedUID(id) {
					bad(fmt.Sprintf("field %s holds an original uid/gid", name))
				}
			})
		}
		return true
	})
}

// mappedUID reports whether id is also the image of some mapped id (then it is not a leak).
func (r *run) mappedUID(id uint32) bool {
	for o := range r.changedUIDs {
		if r.m.UID(o) == id {
			return true
		}
	}
	return false
}

func each(f protoreflect.FieldDescriptor, v protoreflect.Value, fn func(protoreflect.Value)) {
	if f.IsList() {
		for i := 0; i < v.List().Len(); i++ {
			fn(v.List().Get(i))
		}
		return
	}
	fn(v)
}

// crossRefs checks the references of images.md 1.5 that anonymization could break.
func (r *run) crossRefs(out map[string]*image.Image) []string {
	var p []string
	n := &r.man.Verification.CrossRefs
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(r.tmp, name)); return err == nil }
	fileIDs := map[uint32]*fdinfo.FileEntry{}
	if files := out["files.img"]; files != nil {
		for _, e := range files.Entries {
			if fe, ok := e.Msg.(*fdinfo.FileEntry); ok {
				fileIDs[fe.GetId()] = fe
			}
		}
	}
	mounts := map[int32]string{}
	for name, img := range out {
		if img.Desc.Name != "MNTS" {
			continue
		}
		for _, e := range img.Entries {
			if me, ok := e.Msg.(*mnt.MntEntry); ok {
				mounts[int32(me.GetMntId())] = strings.TrimPrefix(me.GetMountpoint(), ".")
			}
		}
		_ = name
	}
	isks := map[uint32]bool{}
	for _, fe := range fileIDs {
		if fe.GetIsk() != nil {
			isks[fe.GetIsk().GetIno()] = true
		}
	}
	var cg *cgroup.CgroupEntry
	if c := out["cgroup.img"]; c != nil && len(c.Entries) > 0 {
		cg, _ = c.Entries[0].Msg.(*cgroup.CgroupEntry)
	}
	p = append(p, cgroupRefs(cg, out, n)...)
	for name, img := range out {
		switch img.Desc.Name {
		case "TCP_STREAM":
			var ino uint32
			if _, err := fmt.Sscanf(name, "tcp-stream-%x.img", &ino); err == nil && len(fileIDs) > 0 {
				*n++
				if !isks[ino] {
					p = append(p, fmt.Sprintf("%s: no inet socket with inode %#x in files.img", name, ino))
				}
			}
		case "FDINFO":
			for _, e := range img.Entries {
				fd, ok := e.Msg.(*fdinfo.FdinfoEntry)
				if !ok {
					continue
				}
				*n++
				if len(fileIDs) > 0 && fileIDs[fd.GetId()] == nil {
					p = append(p, fmt.Sprintf("%s: fd %d refers to file id %#x, not in files.img", name, fd.GetFd(), fd.GetId()))
				}
			}
		case "PSTREE":
			for _, e := range img.Entries {
				ps, ok := e.Msg.(*pstree.PstreeEntry)
				if !ok {
					continue
				}
				for _, f := range []string{fmt.Sprintf("core-%d.img", ps.GetPid()), fmt.Sprintf("mm-%d.img", ps.GetPid()), fmt.Sprintf("ids-%d.img", ps.GetPid())} {
					*n++
					if _, dropped := r.droppedName(f); !exists(f) && !dropped {
						p = append(p, fmt.Sprintf("pstree pid %d: %s missing", ps.GetPid(), f))
					}
				}
			}
		case "PAGEMAP", "SHMEM_PAGEMAP":
			id, ents, err := pagemapIndex(img)
			if err != nil {
				p = append(p, err.Error())
				continue
			}
			*n++
			var need int64
			for _, e := range ents {
				if e.off >= 0 {
					need = e.off + int64(e.n)*pageSize
				}
			}
			st, err := os.Stat(filepath.Join(r.tmp, fmt.Sprintf("pages-%d.img", id)))
			if err != nil || st.Size() < need {
				p = append(p, fmt.Sprintf("%s: pages-%d.img missing or shorter than %d bytes", name, id, need))
			}
		case "REMAP_FPATH":
			for _, e := range img.Entries {
				rm, ok := e.Msg.(*remap_file_path.RemapFilePathEntry)
				if !ok || rm.GetRemapType() != remap_file_path.RemapType_GHOST {
					continue
				}
				*n++
				if g := fmt.Sprintf("ghost-file-%x.img", rm.GetRemapId()); !exists(g) {
					p = append(p, fmt.Sprintf("remap-fpath: %s missing", g))
				}
			}
		case "FILES":
			for _, e := range img.Entries {
				fe, ok := e.Msg.(*fdinfo.FileEntry)
				if !ok || fe.GetReg() == nil || len(mounts) == 0 {
					continue
				}
				reg := fe.GetReg()
				mp, ok := mounts[int32(reg.GetMntId())]
				if !ok {
					continue
				}
				*n++
				nm := strings.TrimSuffix(reg.GetName(), " (deleted)")
				if !strings.HasPrefix(nm, "/") {
					nm = "/" + nm
				}
				if mp != "/" && mp != "" && !strings.HasPrefix(nm, strings.TrimSuffix(mp, "/")+"/") && nm != mp && !bytes.HasPrefix([]byte(reg.GetName()), []byte("memfd:")) {
					p = append(p, fmt.Sprintf("files.img: file id %#x %d-byte name is outside its mount %d", fe.GetId(), len(nm), reg.GetMntId()))
				}
			}
		}
	}
	return p
}

func (r *run) droppedName(name string) (string, bool) {
	for _, d := range r.man.Dropped {
		if d.Name == name {
			return d.Reason, true
		}
	}
	return "", false
}

// cgroupRefs checks that tasks refer to existing cgroup sets and that every member path of a set
// exists in its controller's directory tree (paths and dir names are mapped separately).
func cgroupRefs(cg *cgroup.CgroupEntry, out map[string]*image.Image, n *int) []string {
	if cg == nil {
		return nil
	}
	var p []string
	sets := map[uint32]bool{}
	for _, s := range cg.GetSets() {
		sets[s.GetId()] = true
	}
	for name, img := range out {
		if img.Desc.Name != "CORE" {
			continue
		}
		for _, e := range img.Entries {
			c, ok := e.Msg.(*criu_core.CoreEntry)
			if !ok || c.GetTc() == nil || c.GetTc().CgSet == nil {
				continue
			}
			*n++
			if !sets[c.GetTc().GetCgSet()] {
				p = append(p, fmt.Sprintf("%s: cgroup set %d not in cgroup.img", name, c.GetTc().GetCgSet()))
			}
		}
	}
	trees := map[string][]*cgroup.CgroupDirEntry{}
	for _, c := range cg.GetControllers() {
		for _, cn := range c.GetCnames() {
			trees[cn] = c.GetDirs()
		}
	}
	for _, s := range cg.GetSets() {
		for _, m := range s.GetCtls() {
			dirs, ok := trees[m.GetName()]
			if !ok || len(dirs) == 0 {
				continue
			}
			*n++
			if !cgPathIn(dirs, strings.Split(strings.Trim(m.GetPath(), "/"), "/")) {
				p = append(p, fmt.Sprintf("cgroup.img: set %d controller %s: member path (%d bytes) not in the controller's dir tree", s.GetId(), m.GetName(), len(m.GetPath())))
			}
		}
	}
	return p
}

func cgPathIn(dirs []*cgroup.CgroupDirEntry, comps []string) bool {
	if len(comps) == 0 || comps[0] == "" {
		return true
	}
	for _, d := range dirs {
		// dir_name is the full path of the dir for the top level in CRIU's images, or one component
		name := strings.Trim(d.GetDirName(), "/")
		parts := strings.Split(name, "/")
		if len(parts) <= len(comps) && strings.Join(comps[:len(parts)], "/") == name {
			if cgPathIn(d.GetChildren(), comps[len(parts):]) {
				return true
			}
		}
	}
	// CRIU only dumps the dirs it needs: a member above every dumped dir is fine
	return len(dirs) == 0
}
