package agent

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
)

// objects decodes, defaults and validates YAML documents.
func objects(t testing.TB, yaml string) []api.Object {
	t.Helper()
	objs, err := api.DecodeAndValidate([]byte(yaml))
	if err != nil {
		t.Fatalf("decoding test objects: %v\n%s", err, yaml)
	}
	return objs
}

// set is a datastore UpdateSet of obj at revision rev.
func set(t testing.TB, obj api.Object, rev int64) datastore.Update {
	t.Helper()
	k, ok := api.KindOf(obj)
	if !ok {
		t.Fatalf("object %T has no kind", obj)
	}
	return datastore.Update{Type: datastore.UpdateSet, Kind: k.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName(),
		Revision: rev, Object: obj}
}

// del is a datastore UpdateDelete.
func del(kind, namespace, name string, rev int64) datastore.Update {
	return datastore.Update{Type: datastore.UpdateDelete, Kind: kind, Namespace: namespace, Name: name, Revision: rev}
}

func inSync(rev int64) datastore.Update {
	return datastore.Update{Type: datastore.UpdateInSync, Revision: rev}
}

// podSpec describes a test pod: a Kubernetes-style WorkloadEndpoint.
type podSpec struct {
	Namespace, Name string
	Node            string
	Iface           string
	IP              netip.Addr
	Labels          map[string]string
	Ports           []api.WorkloadEndpointPort
	ServiceAccount  string
}

// wep builds the WorkloadEndpoint for a pod as the Kubernetes integration
// writes it: profiles kns.<ns> and ksa.<ns>.<sa>, orchestrator k8s.
func wep(p podSpec) *api.WorkloadEndpoint {
	sa := p.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	labels := map[string]string{}
	for k, v := range p.Labels {
		labels[k] = v
	}
	w := &api.WorkloadEndpoint{}
	w.Kind, w.APIVersion = "WorkloadEndpoint", api.APIVersion
	w.Name, w.Namespace, w.Labels = p.Name, p.Namespace, labels
	w.Spec = api.WorkloadEndpointSpec{
		Orchestrator:       api.OrchestratorKubernetes,
		Workload:           p.Name,
		Pod:                p.Name,
		Endpoint:           "eth0",
		Node:               p.Node,
		ServiceAccountName: sa,
		IPNetworks:         []string{netip.PrefixFrom(p.IP, p.IP.BitLen()).String()},
		Profiles:           []string{api.NamespaceProfilePrefix + p.Namespace, api.ServiceAccountProfilePrefix + p.Namespace + "." + sa},
		InterfaceName:      p.Iface,
		Ports:              p.Ports,
	}
	api.Default(w)
	return w
}

func labelString(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%s", k, v))
	}
	return strings.Join(parts, ",")
}
