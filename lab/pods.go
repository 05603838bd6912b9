package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
)

// PodSpec describes a workload to create.
type PodSpec struct {
	Namespace string
	Name      string
	// Host is a host name ("host2"), its namespace, or its number.
	Host   string
	Labels map[string]string
	// IP, when set, is requested from IPAM (it must lie in a pool).
	IP string
	// ServiceAccount defaults to "default".
	ServiceAccount string
	// NamespaceLabels are the labels of the Kubernetes namespace (its
	// kns.<namespace> profile).
	NamespaceLabels map[string]string
	// ServiceAccountLabels are the service account's labels (its
	// ksa.<namespace>.<sa> profile).
	ServiceAccountLabels map[string]string
	// Ports are the pod's named ports (the endpoint's spec.ports, as the
	// Kubernetes integration copies them from the pod's containers).
	Ports []api.WorkloadEndpointPort
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

func (p *PodSpec) validate() error {
	for _, f := range []struct{ field, v string }{{"namespace", p.Namespace}, {"name", p.Name}} {
		if !dnsLabel.MatchString(f.v) || len(f.v) > 63 {
			return fmt.Errorf("pod %s/%s: %s %q: want lower-case letters, digits, '-' and '.'", p.Namespace, p.Name, f.field, f.v)
		}
	}
	if p.IP != "" {
		if _, err := netip.ParseAddr(p.IP); err != nil {
			return fmt.Errorf("pod %s/%s: ip %q is not an IP address", p.Namespace, p.Name, p.IP)
		}
	}
	return nil
}

// AddPods creates workloads through the CNI plugin on their hosts, in
// parallel, gives their WorkloadEndpoints the pods' labels (what the
// Kubernetes integration does), and returns the datastore revision after
// the last write: once every agent has programmed it, the pods' policy is
// in the kernel. The caller holds the lab's lock.
func AddPods(ctx context.Context, cfg Config, st *State, client *datastore.Client, specs []PodSpec) ([]Pod, int64, error) {
	if err := cfg.defaults(); err != nil {
		return nil, 0, err
	}
	// Profiles first: kns.<ns> and ksa.<ns>.<sa>, as Kubernetes would have
	// them before any pod.
	var profiles []api.Object
	seen := map[string]bool{}
	pods := make([]Pod, len(specs))
	for i := range specs {
		s := &specs[i]
		if err := s.validate(); err != nil {
			return nil, 0, err
		}
		if s.ServiceAccount == "" {
			s.ServiceAccount = "default"
		}
		h, ok := st.HostByName(s.Host)
		if !ok {
			return nil, 0, fmt.Errorf("pod %s/%s: host %q is not in lab %s (hosts: %s)", s.Namespace, s.Name, s.Host, st.Name, strings.Join(st.hostNames(), ", "))
		}
		if _, dup := st.PodByID(s.Namespace + "/" + s.Name); dup {
			return nil, 0, fmt.Errorf("pod %s/%s exists in lab %s", s.Namespace, s.Name, st.Name)
		}
		if !seen["ns/"+s.Namespace] {
			seen["ns/"+s.Namespace] = true
			profiles = append(profiles, api.NamespaceProfile(s.Namespace, s.NamespaceLabels))
		}
		if k := "sa/" + s.Namespace + "/" + s.ServiceAccount; !seen[k] {
			seen[k] = true
			profiles = append(profiles, api.ServiceAccountProfile(s.Namespace, s.ServiceAccount, s.ServiceAccountLabels))
		}
		pods[i] = Pod{
			Namespace: s.Namespace, Name: s.Name, Host: h.Name,
			NetNS: st.Name + "-pod-" + s.Namespace + "-" + s.Name, ContainerID: randomID(),
			Labels: maps.Clone(s.Labels),
		}
	}
	if _, err := client.WriteBatch(ctx, datastore.OpApply, profiles); err != nil {
		return nil, 0, fmt.Errorf("namespace profiles: %w", err)
	}
	// Record the pods before creating anything, so Down finds them.
	st.Pods = append(st.Pods, pods...)
	if err := st.save(); err != nil {
		return nil, 0, err
	}
	var (
		mu   sync.Mutex
		errs []error
		rev  int64
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 4)
	)
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r, err := addPod(ctx, cfg, st, client, &pods[i], &specs[i])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			rev = max(rev, r)
		}()
	}
	wg.Wait()
	// Copy the results (IP, endpoint) into the state.
	for _, p := range pods {
		if sp, ok := st.PodByID(p.ID()); ok {
			*sp = p
		}
	}
	if err := st.save(); err != nil {
		errs = append(errs, err)
	}
	return pods, rev, errors.Join(errs...)
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (p *Pod) runtimeConf(ip string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: p.ContainerID,
		NetNS:       filepath.Join("/run/netns", p.NetNS),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
		},
	}
	if ip != "" {
		rt.CapabilityArgs = map[string]any{"ips": []string{ip}}
	}
	return rt
}

// cni runs f with libcni from a thread inside the host's namespace, so
// the plugin binary it starts runs there: the host is the plugin's host.
func cniIn(cfg Config, st *State, h *Host, f func(*libcni.CNIConfig, *libcni.NetworkConfigList) error) error {
	list, err := libcni.ConfListFromFile(h.CNIConf)
	if err != nil {
		return fmt.Errorf("CNI config %s: %w", h.CNIConf, err)
	}
	c := libcni.NewCNIConfigWithCacheDir([]string{cfg.CNIDir}, filepath.Join(st.Dir, "cni-cache"), nil)
	return ns.WithNetNSPath(filepath.Join("/run/netns", h.NS), func(ns.NetNS) error { return f(c, list) })
}

func addPod(ctx context.Context, cfg Config, st *State, client *datastore.Client, p *Pod, spec *PodSpec) (int64, error) {
	h, err := st.hostOf(p)
	if err != nil {
		return 0, err
	}
	if err := ipCmd(ctx, "netns", "add", p.NetNS); err != nil {
		return 0, fmt.Errorf("pod %s: %w", p.ID(), err)
	}
	if err := ipCmd(ctx, "-n", p.NetNS, "link", "set", "lo", "up"); err != nil {
		return 0, fmt.Errorf("pod %s: %w", p.ID(), err)
	}
	rt := p.runtimeConf(spec.IP)
	if spec.ServiceAccount != "default" {
		rt.Args = append(rt.Args, [2]string{"K8S_POD_SERVICE_ACCOUNT", spec.ServiceAccount})
	}
	var res *current.Result
	err = cniIn(cfg, st, h, func(c *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
		r, err := c.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pod %s: CNI ADD on %s: %w", p.ID(), h.Name, err)
	}
	for _, ipc := range res.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok {
			p.IP = a.Unmap().String()
			break
		}
	}
	// Give the endpoint the pod's labels, as the Kubernetes integration
	// keeps them in step with the pod.
	kind, _ := api.LookupKind("WorkloadEndpoint")
	objs, _, err := client.List(ctx, kind, datastore.ListOptions{Namespace: p.Namespace})
	if err != nil {
		return 0, fmt.Errorf("pod %s: list endpoints: %w", p.ID(), err)
	}
	for _, o := range objs {
		wep := o.(*api.WorkloadEndpoint)
		if wep.Spec.ContainerID != p.ContainerID || wep.Spec.Node != h.Name {
			continue
		}
		p.Endpoint = wep.Name
		if len(p.Labels) == 0 && len(spec.Ports) == 0 {
			rev, _ := datastore.ParseRevision(wep.ResourceVersion)
			return rev, nil
		}
		labels := maps.Clone(p.Labels)
		for k, v := range wep.Labels {
			if strings.HasPrefix(k, "projectcalico.org/") {
				labels[k] = v
			}
		}
		wep.Labels = labels
		wep.Spec.Ports = spec.Ports
		out, err := client.Update(ctx, wep)
		if err != nil {
			return 0, fmt.Errorf("pod %s: label endpoint %s: %w", p.ID(), wep.Name, err)
		}
		rev, err := datastore.ParseRevision(out.GetResourceVersion())
		return rev, err
	}
	return 0, fmt.Errorf("pod %s: CNI ADD succeeded but no WorkloadEndpoint with container %s on %s", p.ID(), p.ContainerID, h.Name)
}

// DelPods removes workloads: CNI DEL on their host, then their namespace.
// The caller holds the lab's lock.
func DelPods(ctx context.Context, cfg Config, st *State, ids []string) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		p, ok := st.PodByID(id)
		if !ok {
			errs = append(errs, fmt.Errorf("pod %s is not in lab %s", id, st.Name))
			continue
		}
		if h, err := st.hostOf(p); err == nil {
			err := cniIn(cfg, st, h, func(c *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
				return c.DelNetworkList(ctx, list, p.runtimeConf(""))
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("pod %s: CNI DEL: %w", id, err))
			}
		}
		if _, err := os.Stat(nsPath(p.NetNS)); err == nil {
			if err := ipCmd(ctx, "netns", "delete", p.NetNS); err != nil {
				errs = append(errs, err)
			}
		}
		for i := range st.Pods {
			if st.Pods[i].ID() == id {
				st.Pods = append(st.Pods[:i], st.Pods[i+1:]...)
				break
			}
		}
	}
	if err := st.save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// AddPod creates one pod (see AddPods), taking the lab's lock, and waits
// until every agent has programmed it.
func AddPod(ctx context.Context, cfg Config, st *State, spec PodSpec) (*Pod, error) {
	unlock, err := lockFresh(cfg, st)
	if err != nil {
		return nil, err
	}
	defer unlock()
	client, err := st.Client(ctx, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	pods, rev, err := AddPods(ctx, cfg, st, client, []PodSpec{spec})
	if err != nil {
		if _, ok := st.PodByID(spec.Namespace + "/" + spec.Name); ok {
			_ = DelPods(context.WithoutCancel(ctx), cfg, st, []string{spec.Namespace + "/" + spec.Name})
		}
		return nil, err
	}
	if err := WaitProgrammed(ctx, st, rev, 60*time.Second); err != nil {
		return nil, err
	}
	return &pods[0], WaitRoutes(ctx, st, []netip.Addr{netip.MustParseAddr(pods[0].IP)}, 60*time.Second)
}

// RemovePods deletes pods (see DelPods), taking the lab's lock.
func RemovePods(ctx context.Context, cfg Config, st *State, ids []string) error {
	unlock, err := lockFresh(cfg, st)
	if err != nil {
		return err
	}
	defer unlock()
	return DelPods(ctx, cfg, st, ids)
}
