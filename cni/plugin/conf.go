package plugin

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/brindle-net/brindle/cni/wire"
	"github.com/containernetworking/cni/pkg/types"
)

// DefaultReadyTimeout is how long ADD waits for the endpoint's policy when
// the configuration does not say.
const DefaultReadyTimeout = 30 * time.Second

// NetConf is the plugin's network configuration (one entry of a
// conflist's "plugins"). Field names follow Calico's NetConf where they
// mean the same thing.
type NetConf struct {
	types.PluginConf
	// MTU of both veth ends; 0 keeps the kernel default (1500).
	MTU int `json:"mtu,omitempty"`
	// AgentSocket is the agent's local API socket; default
	// wire.DefaultSocket.
	AgentSocket string `json:"agent_socket,omitempty"`
	// PolicySetupTimeoutSeconds bounds the wait for the endpoint's policy
	// to be programmed; 0 means DefaultReadyTimeout.
	PolicySetupTimeoutSeconds int `json:"policy_setup_timeout_seconds,omitempty"`
	// IPAM selects address families and pools.
	IPAM IPAMConf `json:"ipam,omitempty"`
	// RuntimeConfig carries capability arguments ("ips").
	RuntimeConfig struct {
		IPs []string `json:"ips,omitempty"`
	} `json:"runtimeConfig,omitzero"`
}

// IPAMConf is the "ipam" section: Calico's calico-ipam fields.
type IPAMConf struct {
	// Type may be empty, "brindle-ipam" or "calico-ipam": addresses always
	// come from the agent.
	Type       string   `json:"type,omitempty"`
	AssignIPv4 *string  `json:"assign_ipv4,omitempty"`
	AssignIPv6 *string  `json:"assign_ipv6,omitempty"`
	IPv4Pools  []string `json:"ipv4_pools,omitempty"`
	IPv6Pools  []string `json:"ipv6_pools,omitempty"`
}

// config is a parsed, checked NetConf.
type config struct {
	NetConf
	assign4, assign6 bool
	readyTimeout     time.Duration
}

// parseConf decodes and checks the stdin configuration.
func parseConf(data []byte) (*config, error) {
	var c config
	if err := json.Unmarshal(data, &c.NetConf); err != nil {
		return nil, fmt.Errorf("network configuration: %w", err)
	}
	if c.Name == "" {
		return nil, fmt.Errorf("network configuration: name: required")
	}
	if c.MTU < 0 || c.MTU > 65535 || (c.MTU != 0 && c.MTU < 68) {
		return nil, fmt.Errorf("network configuration: mtu %d: want 0 (kernel default) or 68 to 65535", c.MTU)
	}
	if c.PolicySetupTimeoutSeconds < 0 {
		return nil, fmt.Errorf("network configuration: policy_setup_timeout_seconds %d: must not be negative", c.PolicySetupTimeoutSeconds)
	}
	c.readyTimeout = DefaultReadyTimeout
	if c.PolicySetupTimeoutSeconds > 0 {
		c.readyTimeout = time.Duration(c.PolicySetupTimeoutSeconds) * time.Second
	}
	if c.AgentSocket == "" {
		c.AgentSocket = wire.DefaultSocket
	}
	switch c.IPAM.Type {
	case "", "brindle-ipam", "calico-ipam":
	default:
		return nil, fmt.Errorf("network configuration: ipam.type %q: brindle assigns addresses itself; want empty, brindle-ipam or calico-ipam", c.IPAM.Type)
	}
	var err error
	if c.assign4, err = parseBoolField("ipam.assign_ipv4", c.IPAM.AssignIPv4, true); err != nil {
		return nil, err
	}
	if c.assign6, err = parseBoolField("ipam.assign_ipv6", c.IPAM.AssignIPv6, false); err != nil {
		return nil, err
	}
	for i, s := range c.RuntimeConfig.IPs {
		if _, err := parseAddr(s); err != nil {
			return nil, fmt.Errorf("network configuration: runtimeConfig.ips[%d]: %w", i, err)
		}
	}
	return &c, nil
}

func parseBoolField(name string, v *string, def bool) (bool, error) {
	if v == nil {
		return def, nil
	}
	b, err := strconv.ParseBool(*v)
	if err != nil {
		return false, fmt.Errorf("network configuration: %s %q: want \"true\" or \"false\"", name, *v)
	}
	return b, nil
}

// parseAddr accepts "10.0.0.5" or "10.0.0.5/32".
func parseAddr(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Bits() != p.Addr().BitLen() {
		return netip.Addr{}, fmt.Errorf("%q: want an IP address (or a /32, /128)", s)
	}
	return p.Addr(), nil
}

// cniArgs are the CNI_ARGS the plugin understands; others are ignored
// (runtimes pass IgnoreUnknown=1 and more).
type cniArgs struct {
	k8s *wire.K8s
	ips []string
}

// parseArgs parses CNI_ARGS ("K1=V1;K2=V2").
func parseArgs(s string) (*cniArgs, error) {
	var out cniArgs
	var k8s wire.K8s
	if s == "" {
		return &out, nil
	}
	for i, pair := range strings.Split(s, ";") {
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("CNI_ARGS: pair %d %q: want KEY=VALUE", i+1, pair)
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			k8s.Namespace = v
		case "K8S_POD_NAME":
			k8s.Pod = v
		case "K8S_POD_INFRA_CONTAINER_ID":
			k8s.InfraContainerID = v
		case "K8S_POD_SERVICE_ACCOUNT":
			k8s.ServiceAccount = v
		case "IP":
			for _, ip := range strings.Split(v, ",") {
				if _, err := parseAddr(ip); err != nil {
					return nil, fmt.Errorf("CNI_ARGS: IP: %w", err)
				}
				out.ips = append(out.ips, ip)
			}
		}
	}
	switch {
	case k8s.Namespace != "" && k8s.Pod != "":
		out.k8s = &k8s
	case k8s.Namespace != "" || k8s.Pod != "":
		return nil, fmt.Errorf("CNI_ARGS: K8S_POD_NAMESPACE and K8S_POD_NAME must be given together (got namespace %q, pod %q)", k8s.Namespace, k8s.Pod)
	}
	return &out, nil
}
