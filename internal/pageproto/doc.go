// Package pageproto is CRIU's page-server wire protocol (criu/page-xfer.c) as both of criukit's
// page servers speak it (cow's dedup server and migrate's receiver/relay): the PS_IOV_* commands,
// the PS_TYPE_* kinds of dst_id, and the 32-byte header {u32 cmd; u64 nr_pages; u64 vaddr;
// u64 dst_id} in host byte order and natural alignment, with the PE_* flags of PS_IOV_ADD_F in the
// upper 16 bits of cmd. Page data follows an ADD_F whose flags have PE_PRESENT.
package pageproto
