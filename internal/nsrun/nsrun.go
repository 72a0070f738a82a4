// Package nsrun runs a function on an OS thread switched into another network namespace, so
// sockets and TUN devices created by the function belong to that namespace.
package nsrun

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Do runs fn on a thread switched into ns and returns its error. If switching back fails the
// thread stays locked, so the runtime discards it when the goroutine ends.
func Do(ns netns.NsHandle, fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return nil
	}, fn)
}

// InNew runs fn on a thread moved into a new network namespace (fn can keep it with
// netns.Get); the thread then returns to the caller's namespace, as with Do.
func InNew(fn func() error) error {
	return onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		return nil
	}, fn)
}

// onThread runs enter and then fn on a locked thread, and switches the thread back to its
// original network namespace.
func onThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := enter(); err != nil {
			if netns.Set(orig) == nil { // unshare may have failed half way; setns is a no-op then
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
