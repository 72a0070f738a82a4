package workload

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// EnvInNS marks a process that was already started in its workload's namespaces. Starters that apply
// the clone flags themselves (harness.Start) set it to "1"; without it Run re-executes itself in new
// namespaces and waits for that child, writing the child's pid to ReadyFile+".pid".
const EnvInNS = "CRIUKIT_WORKLOAD_INNS"

const envInNS = EnvInNS

func runInNamespaces(name string, flags uintptr, args []string, cfg Config) error {
	cmd := exec.Command(selfExe(), os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), EnvInNS+"=1", EnvReadyFile+"="+cfg.ReadyFile, EnvDir+"="+cfg.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: flags}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("workload %s: start in new namespaces (needs root): %w", name, err)
	}
	if cfg.ReadyFile != "" {
		_ = writeAtomic(cfg.ReadyFile+".pid", []byte(strconv.Itoa(cmd.Process.Pid)))
	}
	return cmd.Wait()
}
