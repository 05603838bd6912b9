package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and version of every Brindle resource: Calico's, so users' YAML
// decodes unchanged.
const (
	Group      = "projectcalico.org"
	Version    = "v3"
	APIVersion = Group + "/" + Version
)

// Object is implemented by every resource kind (a pointer to the kind's
// struct). Each kind embeds metav1.TypeMeta inline and metav1.ObjectMeta as
// "metadata", so the accessors come from apimachinery.
type Object interface {
	metav1.Object
	GetObjectKind() schema.ObjectKind
}

// KindInfo describes one resource kind: how it is named on the command line
// and in etcd, and how to make an empty one.
type KindInfo struct {
	// Kind is the canonical CamelCase kind, e.g. "NetworkPolicy".
	Kind string
	// Plural is the lowercase plural used in etcd keys and on the command
	// line, e.g. "networkpolicies".
	Plural string
	// Namespaced is true for kinds that live in a namespace.
	Namespaced bool
	// Aliases are the extra lowercase names brindlectl accepts (singular,
	// short forms), e.g. "networkpolicy", "netpol", "np".
	Aliases []string
	// New returns an empty object of this kind with TypeMeta set.
	New func() Object
}
