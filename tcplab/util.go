package tcplab

import "golang.org/x/sys/unix"

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

func rawSetsockopt(fd, opt int, b []byte) error {
	return unix.SetsockoptString(fd, unix.SOL_TCP, opt, string(b))
}
