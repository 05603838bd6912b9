package kubernetes

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/integrations/kubernetes/kubepod"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultServiceAccount is a pod's service account when its spec names
// none (the API server fills it in; objects built by hand may not).
const DefaultServiceAccount = "default"

// storedPolicy is the original of a Kubernetes NetworkPolicy as the
// controller stores it: identity, labels and spec only (no managedFields,
// status or API-server bookkeeping), so that it changes only when the
// policy does.
func storedPolicy(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              np.Name,
			Namespace:         np.Namespace,
			UID:               np.UID,
			CreationTimestamp: np.CreationTimestamp,
			Labels:            np.Labels,
		},
		Spec: *np.Spec.DeepCopy(),
	}
}

// translatedPolicy is the knp.default.<name> policy as the datastore
// stores it for np (its identity is the datastore's own).
func translatedPolicy(np *networkingv1.NetworkPolicy) (*api.NetworkPolicy, error) {
	tr, err := api.TranslateNetworkPolicy(np)
	if err != nil {
		return nil, err
	}
	tr.UID, tr.ResourceVersion, tr.CreationTimestamp = "", "", metav1.Time{}
	return tr, nil
}

// namespaceProfile is the kns.<ns> profile of a namespace.
func namespaceProfile(ns *corev1.Namespace) *api.Profile {
	return api.NamespaceProfile(ns.Name, ns.Labels)
}

// serviceAccountProfile is the ksa.<ns>.<sa> profile of a service account.
func serviceAccountProfile(sa *corev1.ServiceAccount) *api.Profile {
	return api.ServiceAccountProfile(sa.Namespace, sa.Name, sa.Labels)
}

// profileOwner parses a profile name this controller owns: kind "ns" with
// the namespace, or kind "sa" with namespace and account. ok is false for
// any other profile.
func profileOwner(name string) (kind, ns, sa string, ok bool) {
	switch {
	case strings.HasPrefix(name, api.NamespaceProfilePrefix):
		ns = strings.TrimPrefix(name, api.NamespaceProfilePrefix)
		return "ns", ns, "", ns != ""
	case strings.HasPrefix(name, api.ServiceAccountProfilePrefix):
		// Namespace names are DNS labels (no dots); account names may
		// contain dots, so the first dot ends the namespace.
		ns, sa, found := strings.Cut(strings.TrimPrefix(name, api.ServiceAccountProfilePrefix), ".")
		return "sa", ns, sa, found && ns != "" && sa != ""
	}
	return "", "", "", false
}

// endpointFor returns wep updated to carry pod's labels, service account,
// profiles and named ports exactly as the CNI service would have written
// them had it known the pod, and whether anything changed. wep is not
// modified.
func endpointFor(wep *api.WorkloadEndpoint, pod *corev1.Pod) (*api.WorkloadEndpoint, bool) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = DefaultServiceAccount
	}
	labels := make(map[string]string, len(pod.Labels)+3)
	maps.Copy(labels, pod.Labels)
	labels[api.LabelNamespace] = pod.Namespace
	labels[api.LabelOrchestrator] = api.OrchestratorKubernetes
	if len(sa) < 63 {
		labels[api.LabelServiceAccount] = sa
	} else {
		delete(labels, api.LabelServiceAccount)
	}
	profiles := []string{api.NamespaceProfilePrefix + pod.Namespace, api.ServiceAccountProfilePrefix + pod.Namespace + "." + sa}
	ports := kubepod.Ports(pod)

	if maps.Equal(wep.Labels, labels) && wep.Spec.ServiceAccountName == sa &&
		slices.Equal(wep.Spec.Profiles, profiles) && slices.Equal(wep.Spec.Ports, ports) {
		return wep, false
	}
	// A shallow copy: only the fields replaced below differ, and nothing
	// shared is modified.
	cp := *wep
	out := &cp
	out.ObjectMeta = *wep.ObjectMeta.DeepCopy()
	out.Labels = labels
	out.Spec.ServiceAccountName = sa
	out.Spec.Profiles = profiles
	out.Spec.Ports = ports
	return out, true
}

// sameObject reports whether two stored objects are equal apart from the
// metadata the datastore assigns (resourceVersion, UID, creation time).
func sameObject(a, b api.Object) bool {
	ja, ea := normalJSON(a)
	jb, eb := normalJSON(b)
	return ea == nil && eb == nil && bytes.Equal(ja, jb)
}

func normalJSON(o api.Object) ([]byte, error) {
	var m map[string]any
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "resourceVersion")
		delete(md, "uid")
		delete(md, "creationTimestamp")
	}
	return json.Marshal(m)
}
