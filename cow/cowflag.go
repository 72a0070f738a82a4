package cow

// PECow is the pagemap flag of criukit's CRIU patch 0002 (criu-patches/, docs/cow-criu.md): the
// pages share their frame with the parent task's page that restore inherits them from, so the
// patched CRIU neither reads nor compares them. Stock CRIU ignores it. Deduping keeps it on the
// PE_PARENT entries that replace such pages; materializing drops it (always safe).
const PECow = 1 << 3

// PESib is the pagemap flag of criukit's CRIU patch 0003: the pages are the children's shared
// version of pages their parent rewrote after fork; the patched CRIU puts that version into the
// parent before forking the children, and the parent's own after. A hint like PECow (it never
// changes contents; stock CRIU ignores it); deduping keeps it, materializing drops it.
const PESib = 1 << 4
