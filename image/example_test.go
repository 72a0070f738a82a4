package image_test

import (
	"fmt"
	"io"
	"log"

	pagemap "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/criukit/criukit/image"
)

// Read a whole image, change it, write it back atomically.
func ExampleReadFile() {
	img, err := image.ReadFile("/tmp/dump/pagemap-1.img")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range img.Entries[1:] {
		pe := e.Msg.(*pagemap.PagemapEntry)
		fmt.Printf("%#x %d pages flags %#x\n", pe.GetVaddr(), image.NrPages(pe), image.PagemapFlags(pe))
	}
	if err := image.WriteFile("/tmp/dump/pagemap-1.img", img); err != nil {
		log.Fatal(err)
	}
}

// Stream a big image: entries one by one, extras only when wanted.
func ExampleOpen() {
	r, err := image.Open("/tmp/dump/ghost-file-2.img")
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err) // a *image.FormatError: file, offset, entry
		}
		n, _ := io.Copy(io.Discard, r.Extra())
		fmt.Println(e.Msg.ProtoReflect().Descriptor().Name(), n)
	}
}

// Read 64 bytes of task 1234's memory at an address.
func ExampleOpenMemory() {
	m, err := image.OpenMemory("/tmp/dump", 1234)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	buf := make([]byte, 64)
	if _, err := m.ReadAt(buf, 0x7ffc0000f000); err != nil {
		log.Fatal(err) // errors.Is(err, image.ErrPageNotDumped), ErrPageLazy, ErrNoParent...
	}
	fmt.Printf("%q\n", buf)
}
