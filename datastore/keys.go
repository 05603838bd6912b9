package datastore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/brindle-net/brindle/api"
)

// ResourcePrefix is the root of every v3 resource key (Calico's layout).
const ResourcePrefix = "/calico/resources/v3/projectcalico.org/"

// IPAMPrefix is the root of Calico's IPAM keys, which the raw API serves.
const IPAMPrefix = "/calico/ipam/v2/"

// KindPrefix returns the key prefix of every object of kind k, or of those
// in one namespace when namespace is non-empty and k is namespaced.
func KindPrefix(k api.KindInfo, namespace string) string {
	p := ResourcePrefix + k.Plural + "/"
	if k.Namespaced && namespace != "" {
		p += namespace + "/"
	}
	return p
}

// Key returns the etcd key of the named object:
// /calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>.
func Key(k api.KindInfo, namespace, name string) (string, error) {
	if err := checkSegment("metadata.name", name); err != nil {
		return "", err
	}
	if !k.Namespaced {
		if namespace != "" {
			return "", fmt.Errorf("%w: metadata.namespace: %s is cluster-scoped but namespace %q is set", ErrInvalid, k.Kind, namespace)
		}
		return ResourcePrefix + k.Plural + "/" + name, nil
	}
	if err := checkSegment("metadata.namespace", namespace); err != nil {
		return "", err
	}
	return ResourcePrefix + k.Plural + "/" + namespace + "/" + name, nil
}

func checkSegment(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s: required", ErrInvalid, field)
	case strings.Contains(s, "/"):
		return fmt.Errorf("%w: %s: %q must not contain '/'", ErrInvalid, field, s)
	case s == "." || s == "..":
		return fmt.Errorf("%w: %s: %q is not a valid name", ErrInvalid, field, s)
	}
	return nil
}

// KeyOf returns the kind and etcd key of obj.
func KeyOf(obj api.Object) (api.KindInfo, string, error) {
	k, ok := api.KindOf(obj)
	if !ok {
		return api.KindInfo{}, "", fmt.Errorf("%w: unknown kind %T", ErrInvalid, obj)
	}
	key, err := Key(k, obj.GetNamespace(), obj.GetName())
	if err != nil {
		return k, "", fmt.Errorf("%s: %w", k.Kind, err)
	}
	return k, key, nil
}

// ParseKey splits a resource key into its kind, namespace and name. ok is
// false for keys outside the resource layout or of unknown kinds.
func ParseKey(key string) (k api.KindInfo, namespace, name string, ok bool) {
	rest, found := strings.CutPrefix(key, ResourcePrefix)
	if !found {
		return api.KindInfo{}, "", "", false
	}
	plural, rest, found := strings.Cut(rest, "/")
	if !found {
		return api.KindInfo{}, "", "", false
	}
	k, ok = kindByPlural(plural)
	if !ok {
		return api.KindInfo{}, "", "", false
	}
	if k.Namespaced {
		namespace, name, found = strings.Cut(rest, "/")
		if !found || namespace == "" || name == "" || strings.Contains(name, "/") {
			return api.KindInfo{}, "", "", false
		}
		return k, namespace, name, true
	}
	if rest == "" || strings.Contains(rest, "/") {
		return api.KindInfo{}, "", "", false
	}
	return k, "", rest, true
}

// kindByPlural looks a kind up by its exact plural (the key segment).
func kindByPlural(plural string) (api.KindInfo, bool) {
	k, ok := api.LookupKind(plural)
	if !ok || k.Plural != plural {
		return api.KindInfo{}, false
	}
	return k, true
}

// encode renders obj as the JSON stored in etcd. The resource version is
// never stored (it is the key's mod revision), so it is cleared in the copy
// that is written; obj itself is not modified.
func encode(obj api.Object) ([]byte, error) {
	rv := obj.GetResourceVersion()
	if rv != "" {
		obj.SetResourceVersion("")
		defer obj.SetResourceVersion(rv)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return b, nil
}

// decode parses a stored value as an object of kind k and stamps the
// resource version from the key's mod revision.
func decode(k api.KindInfo, value []byte, modRev int64) (api.Object, error) {
	obj := k.New()
	if err := json.Unmarshal(value, obj); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", k.Kind, err)
	}
	obj.SetResourceVersion(FormatRevision(modRev))
	return obj, nil
}

// FormatRevision renders an etcd revision as a resourceVersion.
func FormatRevision(rev int64) string { return strconv.FormatInt(rev, 10) }

// ParseRevision parses a resourceVersion; "" is revision 0 (none).
func ParseRevision(rv string) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: metadata.resourceVersion: %q is not an etcd revision", ErrInvalid, rv)
	}
	return n, nil
}
