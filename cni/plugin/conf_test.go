package plugin

import (
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/cni/wire"
	"github.com/google/go-cmp/cmp"
)

func TestParseConf(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
		check   func(t *testing.T, c *config)
	}{
		{name: "defaults", in: `{"cniVersion":"1.1.0","name":"n","type":"brindle-cni"}`, check: func(t *testing.T, c *config) {
			if c.AgentSocket != wire.DefaultSocket || !c.assign4 || c.assign6 || c.readyTimeout != DefaultReadyTimeout || c.MTU != 0 {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "calico fields", in: `{"name":"n","mtu":1440,"policy_setup_timeout_seconds":3,"agent_socket":"/x.sock","ipam":{"type":"calico-ipam","assign_ipv4":"false","assign_ipv6":"true","ipv6_pools":["p6"]},"runtimeConfig":{"ips":["10.0.0.1/32"]}}`, check: func(t *testing.T, c *config) {
			if c.MTU != 1440 || c.readyTimeout != 3*time.Second || c.AgentSocket != "/x.sock" || c.assign4 || !c.assign6 || c.IPAM.IPv6Pools[0] != "p6" || c.RuntimeConfig.IPs[0] != "10.0.0.1/32" {
				t.Errorf("parsed: %+v", c)
			}
		}},
		{name: "no name", in: `{"type":"brindle-cni"}`, wantErr: "name: required"},
		{name: "bad json", in: `{`, wantErr: "network configuration"},
		{name: "bad mtu", in: `{"name":"n","mtu":20}`, wantErr: "mtu 20"},
		{name: "negative timeout", in: `{"name":"n","policy_setup_timeout_seconds":-1}`, wantErr: "policy_setup_timeout_seconds -1"},
		{name: "foreign ipam", in: `{"name":"n","ipam":{"type":"host-local"}}`, wantErr: `ipam.type "host-local"`},
		{name: "bad bool", in: `{"name":"n","ipam":{"assign_ipv4":"yes"}}`, wantErr: `ipam.assign_ipv4 "yes"`},
		{name: "bad runtime ip", in: `{"name":"n","runtimeConfig":{"ips":["10.0.0.0/24"]}}`, wantErr: "runtimeConfig.ips[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConf([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    cniArgs
		wantErr string
	}{
		{in: ""},
		{in: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u",
			want: cniArgs{k8s: &wire.K8s{Namespace: "ns", Pod: "p", InfraContainerID: "abc"}}},
		{in: "IP=10.0.0.1,fd00::1;K8S_POD_SERVICE_ACCOUNT=x", want: cniArgs{ips: []string{"10.0.0.1", "fd00::1"}}},
		{in: "K8S_POD_NAMESPACE=ns", wantErr: "must be given together"},
		{in: "IgnoreUnknown", wantErr: `pair 1 "IgnoreUnknown": want KEY=VALUE`},
		{in: "IP=banana", wantErr: `IP: "banana"`},
	}
	for _, tc := range tests {
		got, err := parseArgs(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseArgs(%q): err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, *got, cmp.AllowUnexported(cniArgs{})); diff != "" {
			t.Errorf("parseArgs(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
