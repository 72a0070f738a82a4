package cow

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/criukit/criukit/image"
)

var levelRe = regexp.MustCompile(`^cow-[0-9]+$`)

// isLayoutFile tells whether name belongs to the dedup layout (not to CRIU's images).
func isLayoutFile(name string) bool {
	return name == MarkerFile || name == "parent" || levelRe.MatchString(name)
}

// Materialize writes a stock (non-deduped) copy of the deduped directory src into dst, which must
// not exist: every process' pages are read through the parent chain and stored in its own pages
// file again. src is not modified.
func Materialize(src, dst string) error {
	return MaterializeContext(context.Background(), src, dst)
}

// MaterializeContext is Materialize that stops when ctx is done (checked per pagemap entry),
// leaving no temporary directory and nothing at dst.
func MaterializeContext(ctx context.Context, src, dst string) error {
	if !IsDeduped(src) {
		return fmt.Errorf("%s: %w", src, ErrNotDeduped)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s: %w (choose a new directory)", dst, ErrExists)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dst)), "."+filepath.Base(dst)+".criukit-tmp-")
	if err != nil {
		return err
	}
	if err := materializeInto(ctx, src, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	return nil
}

func materializeInto(ctx context.Context, src, out string) error {
	tasks, err := readPstree(src)
	if err != nil {
		return err
	}
	redo := map[string]bool{} // files rewritten
	var todo []task
	for _, t := range tasks {
		if _, err := os.Stat(filepath.Join(src, levelDir(1), pagemapName(t.pid))); err == nil {
			todo = append(todo, t)
			redo[pagemapName(t.pid)] = true
			_, head, _, err := readPagemap(filepath.Join(src, pagemapName(t.pid)))
			if err != nil {
				return err
			}
			redo[pagesName(head.GetPagesId())] = true
		}
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if redo[e.Name()] || isLayoutFile(e.Name()) {
			continue
		}
		if !e.Type().IsRegular() {
			return fmt.Errorf("%s: %w: %s is not a regular file", src, ErrBadImages, e.Name())
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(out, e.Name())); err != nil {
			return err
		}
	}
	ps := pageSize()
	buf := make([]byte, 1<<20)
	for _, t := range todo {
		like, head, pents, err := readPagemap(filepath.Join(src, pagemapName(t.pid)))
		if err != nil {
			return err
		}
		mem, err := image.OpenMemory(src, t.pid)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(out, pagesName(head.GetPagesId())), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			mem.Close()
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		var nents []pment
		nr5 := false
		for _, e := range pents {
			nr5 = nr5 || e.NrPages != nil
		}
		for _, e := range pents {
			if err := ctx.Err(); err != nil {
				f.Close()
				mem.Close()
				return err
			}
			fl := image.PagemapFlags(e)
			if fl&(image.PEParent|image.PEPresent) == 0 {
				nents = append(nents, pment{orig: e})
				continue
			}
			n := image.NrPages(e)
			nents = append(nents, newEntry(e.GetVaddr(), n, image.PEPresent|fl&image.PELazy, nr5))
			for left, va := int64(n)*ps, int64(e.GetVaddr()); left > 0; {
				k := min(left, int64(len(buf)))
				if err := ctx.Err(); err != nil {
					f.Close()
					mem.Close()
					return err
				}
				if _, err := mem.ReadAt(buf[:k], va); err != nil {
					f.Close()
					mem.Close()
					return fmt.Errorf("pid %d: %w", t.pid, err)
				}
				if _, err := w.Write(buf[:k]); err != nil {
					f.Close()
					mem.Close()
					return err
				}
				left -= k
				va += k
			}
		}
		mem.Close()
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := writePagemap(filepath.Join(out, pagemapName(t.pid)), like, head.GetPagesId(), nents); err != nil {
			return err
		}
	}
	return nil
}

// sortedPids returns the keys of m in order.
func sortedPids(m map[int]int64) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func pagesIDOf(path string) (uint32, bool) {
	b := filepath.Base(path)
	if !strings.HasPrefix(b, "pages-") || !strings.HasSuffix(b, ".img") {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(b, "pages-"), ".img"), 10, 32)
	return uint32(v), err == nil
}
