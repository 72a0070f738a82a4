package inspect

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// Container is what the container engine recorded next to the images (config.dump, spec.dump,
// network.status). Field names follow checkpointctl's JSON.
type Container struct {
	Name         string            `json:"container_name"`
	Image        string            `json:"image"`
	ID           string            `json:"id"`
	Runtime      string            `json:"runtime"`
	Created      string            `json:"created"`
	Checkpointed string            `json:"checkpointed,omitempty"`
	Engine       string            `json:"engine"`
	IP           string            `json:"ip,omitempty"`
	MAC          string            `json:"mac,omitempty"`
	Networks     []Network         `json:"networks,omitempty"`
	Pod          string            `json:"pod_name,omitempty"`
	Namespace    string            `json:"kubernetes_namespace,omitempty"`
	Annotations  map[string]string `json:"-"`
	Mounts       []Mount           `json:"-"`
}

// Network is one network of the container and its interfaces (podman's network.status).
type Network struct {
	Name       string               `json:"name"`
	Interfaces map[string]Interface `json:"interfaces"`
}

// Interface is one interface of a network.
type Interface struct {
	IP      string `json:"ip,omitempty"`
	MAC     string `json:"mac,omitempty"`
	Gateway string `json:"gateway,omitempty"`
}

// Mount is one mount of the container's OCI spec (checkpointctl's --mounts).
type Mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

type configDump struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	RootfsImageName string    `json:"rootfsImageName"`
	Runtime         string    `json:"runtime"`
	CreatedTime     time.Time `json:"createdTime"`
	CheckpointedAt  time.Time `json:"checkpointedTime"`
}

type specDump struct {
	Annotations map[string]string `json:"annotations"`
	Mounts      []Mount           `json:"mounts"`
}

type networkStatus map[string]struct {
	Interfaces map[string]struct {
		Subnets []struct {
			IPNet   string `json:"ipnet"`
			Gateway string `json:"gateway"`
		} `json:"subnets"`
		MAC string `json:"mac_address"`
	} `json:"interfaces"`
}

func readJSON(fsys fs.FS, name string, v any) (bool, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}

// ReadContainer reads the engine's metadata at the root of a container checkpoint. It returns nil
// (no error) when there is none (a plain images directory).
func ReadContainer(fsys fs.FS) (*Container, error) {
	var cfg configDump
	var spec specDump
	okc, err := readJSON(fsys, "config.dump", &cfg)
	if err != nil {
		return nil, err
	}
	oks, err := readJSON(fsys, "spec.dump", &spec)
	if err != nil {
		return nil, err
	}
	if !okc && !oks {
		return nil, nil
	}
	c := &Container{Image: cfg.RootfsImageName, ID: cfg.ID, Runtime: cfg.Runtime, Annotations: spec.Annotations, Mounts: spec.Mounts}
	if !cfg.CheckpointedAt.IsZero() {
		c.Checkpointed = cfg.CheckpointedAt.Format(time.RFC3339)
	}
	created := cfg.CreatedTime.Format(time.RFC3339)
	a := spec.Annotations
	switch a["io.container.manager"] {
	case "libpod":
		c.Engine, c.Name, c.Created = "Podman", cfg.Name, created
		var ns networkStatus
		if ok, _ := readJSON(fsys, "network.status", &ns); ok {
			c.addNetworks(ns)
		}
	case "cri-o":
		var md struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(a["io.kubernetes.cri-o.Metadata"]), &md); err != nil {
			return nil, fmt.Errorf("spec.dump: annotation io.kubernetes.cri-o.Metadata: %w", err)
		}
		c.Engine, c.Name, c.Created = "CRI-O", md.Name, a["io.kubernetes.cri-o.Created"]
		c.IP, c.Namespace, c.Pod = a["io.kubernetes.cri-o.IP.0"], a["io.kubernetes.pod.namespace"], a["io.kubernetes.pod.name"]
	default:
		c.Engine, c.Name, c.Created = "containerd", a["io.kubernetes.cri.container-name"], created
		c.Namespace, c.Pod = a["io.kubernetes.cri.sandbox-namespace"], a["io.kubernetes.cri.sandbox-name"]
	}
	return c, nil
}

func (c *Container) addNetworks(ns networkStatus) {
	names := make([]string, 0, len(ns))
	for n := range ns {
		names = append(names, n)
	}
	sort.Strings(names)
	var ips, macs []string
	for _, n := range names {
		nw := Network{Name: n, Interfaces: map[string]Interface{}}
		for ifn, ifc := range ns[n].Interfaces {
			i := Interface{MAC: ifc.MAC}
			if ifc.MAC != "" {
				macs = append(macs, ifc.MAC)
			}
			for _, s := range ifc.Subnets {
				if s.IPNet != "" {
					i.IP = s.IPNet
					ips = append(ips, strings.SplitN(s.IPNet, "/", 2)[0])
				}
				if s.Gateway != "" {
					i.Gateway = s.Gateway
				}
			}
			nw.Interfaces[ifn] = i
		}
		c.Networks = append(c.Networks, nw)
	}
	c.IP, c.MAC = strings.Join(ips, ", "), strings.Join(macs, ", ")
}
