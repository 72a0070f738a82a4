// Package kvm is a tiny VMM on raw KVM ioctls that CRIU can checkpoint with its cooperation: it runs
// a real-mode guest incrementing a counter in guest RAM (a plain anonymous mapping); before a dump it
// parks (saves the vCPU registers into its own memory and closes the VM, vCPU and kvm_run mapping),
// and after restore it re-creates the VM over the restored RAM so the guest counts on. Demo drives
// the whole cycle with criu; HoldFDs keeps KVM fds open for tests of tools that must diagnose them.
package kvm
