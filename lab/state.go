package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"syscall"
)

// DefaultStateDir holds one directory per lab.
const DefaultStateDir = "/run/brindle-lab"

// DefaultName is the lab name when none is given.
const DefaultName = "lab"

// Fabric addresses. They live only inside the lab's namespaces, so every
// lab uses the same ones.
var (
	subnetA       = netip.MustParsePrefix("172.30.1.0/24")
	subnetB       = netip.MustParsePrefix("172.30.2.0/24")
	outsideNet    = netip.MustParsePrefix("172.30.99.0/24")
	outsideAddr   = netip.MustParseAddr("172.30.99.2")
	outsideGW     = netip.MustParseAddr("172.30.99.1")
	mgmtBase      = netip.MustParseAddr("169.254.210.0")
	defaultPool   = "10.244.0.0/16"
	poolName      = "default-ipv4-ippool"
	torAS         = 64513
	etcdPort      = 2379
	etcdPeerPort  = 2380
	maxMgmtSlots  = 64
	maxHosts      = 50
	nameMaxLength = 12
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// ValidateName checks a lab name: a-z, 0-9 and '-', starting with a
// letter, at most 12 characters (it names the root-namespace veth
// "bl-<name>", and interface names have 15).
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > nameMaxLength || !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: want 1 to %d characters of a-z, 0-9 and '-', starting with a letter", name, nameMaxLength)
	}
	return nil
}

// State is everything a lab owns, kept in <dir>/state.json.
type State struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	TOR  bool   `json:"tor,omitempty"`
	// VXLANMode is the IPPool's vxlanMode ("" or Never: routed).
	VXLANMode string `json:"vxlanMode,omitempty"`
	// BGP: the agents speak BGP (`brindle node --ip`).
	BGP bool `json:"bgp,omitempty"`
	// Endpoint is the datastore's client URL.
	Endpoint string `json:"endpoint"`
	// MgmtIf is the veth in the machine's own namespace; MgmtRoot its
	// address, MgmtRouter the router's end.
	MgmtIf     string     `json:"mgmtIf"`
	MgmtRoot   netip.Addr `json:"mgmtRoot"`
	MgmtRouter netip.Addr `json:"mgmtRouter"`
	Router     Host       `json:"router"`
	Outside    string     `json:"outside"` // namespace
	Hosts      []Host     `json:"hosts"`
	Procs      []Proc     `json:"procs,omitempty"`
	Pods       []Pod      `json:"pods,omitempty"`
	// Namespaces lists every namespace created, in creation order.
	Namespaces []string `json:"namespaces,omitempty"`
	// ExternalAddrs are source addresses added to the outside namespace.
	ExternalAddrs []string `json:"externalAddrs,omitempty"`
}

// Host is one lab host (or the router).
type Host struct {
	Name    string       `json:"name"` // node name in the datastore
	NS      string       `json:"netns"`
	Addr    netip.Prefix `json:"addr"` // fabric address with its subnet length
	Gateway netip.Addr   `json:"gateway,omitempty"`
	Socket  string       `json:"socket,omitempty"` // agent's local API
	Log     string       `json:"log,omitempty"`
	CNIConf string       `json:"cniConf,omitempty"`
}

// Proc is a process the lab started.
type Proc struct {
	Role string `json:"role"` // datastore, node/<host>, bird
	PID  int    `json:"pid"`
	Log  string `json:"log"`
}

// Pod is a workload attached through CNI.
type Pod struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Host        string `json:"host"`
	NetNS       string `json:"netns"`
	ContainerID string `json:"containerID"`
	IP          string `json:"ip,omitempty"`
	// Endpoint is the WorkloadEndpoint's name (in Namespace).
	Endpoint string            `json:"endpoint,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// ID is "namespace/name".
func (p *Pod) ID() string { return p.Namespace + "/" + p.Name }

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// save writes the state atomically.
func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	return os.Rename(tmp, statePath(s.Dir))
}

// ErrNotUp is returned by Load for a lab that does not exist.
var ErrNotUp = errors.New("lab is not up")

// Load reads the state of lab name under stateDir.
func Load(stateDir, name string) (*State, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(statePath(filepath.Join(stateDir, name)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab %q: %w (start it with `brindle lab up --name %s`)", name, ErrNotUp, name)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab %q: bad state file: %w", name, err)
	}
	return &s, nil
}

// List names the labs that have a state directory.
func List(stateDir string) ([]string, error) {
	ents, err := os.ReadDir(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && ValidateName(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// lockDir takes an exclusive lock on the lab's directory, so two commands
// do not change one lab's state at once. The returned func unlocks.
func lockDir(dir string) (func(), error) { return lockFile(filepath.Join(dir, "lock")) }

// lockFresh takes st's lab lock and re-reads st from disk, since another
// command may have changed the lab before the lock was ours (a lab that no
// longer reads back keeps st as it was).
func lockFresh(cfg Config, st *State) (unlock func(), err error) {
	unlock, err = lockDir(st.Dir)
	if err != nil {
		return nil, err
	}
	if fresh, err := Load(cfg.StateDir, st.Name); err == nil {
		*st = *fresh
	}
	return unlock, nil
}

// mgmtLock serialises the choice of management addresses between labs.
const mgmtLock = "/run/brindle-lab-mgmt.lock"

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock lab: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock lab: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// HostByName finds a host by node name, netns, or its number ("2").
func (s *State) HostByName(name string) (*Host, bool) {
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if h.Name == name || h.NS == name || fmt.Sprintf("%d", i+1) == name {
			return h, true
		}
	}
	return nil, false
}

// PodByID finds a pod by "namespace/name".
func (s *State) PodByID(id string) (*Pod, bool) {
	for i := range s.Pods {
		if s.Pods[i].ID() == id {
			return &s.Pods[i], true
		}
	}
	return nil, false
}

// Sockets are the agents' local API sockets (hosts, then the router's
// when it runs an agent).
func (s *State) Sockets() []string {
	var out []string
	for _, h := range s.Hosts {
		out = append(out, h.Socket)
	}
	if s.Router.Socket != "" {
		out = append(out, s.Router.Socket)
	}
	return out
}
