// Package api holds Brindle's resource types — Calico's projectcalico.org/v3
// kinds, field for field, so users' Calico YAML applies unchanged — and the
// code that turns user files into checked objects:
//
//   - DecodeDocuments reads a file of YAML or JSON documents (separated by
//     "---", concatenated, in an array, or in a List) mixing v3 objects,
//     Kubernetes networking.k8s.io/v1 NetworkPolicies (returned as
//     *networkingv1.NetworkPolicy; TranslateNetworkPolicy turns one into the
//     Calico policy that enforces it) and 2017 v1 objects, which are
//     converted to v3 on input exactly as calico-upgrade did (v1.go). Kinds
//     are case-insensitive and take the aliases of LookupKind. Decoding is
//     strict: unknown and duplicate fields are errors.
//   - Default fills in Calico's defaults (policy types, tier and tier label,
//     pool block size and modes, masked nets...); it is idempotent.
//   - Validate checks a defaulted object and returns FieldErrors naming
//     every problem with its field path, e.g.
//     "spec.ingress[2].destination.ports[0]: port range 90:80 is reversed".
//   - DecodeAndValidate does all three, giving namespaced objects without a
//     namespace the namespace "default" as calicoctl does.
//
// Failure behaviour: nothing here panics on bad input. Decoding never
// half-succeeds: on any error no objects are returned, and the error joins
// one *DocumentError per failing document (its position, 1-based in the
// message, plus kind and name) wrapping FieldErrors.
//
// The package is a leaf: it imports only the selector package and
// Kubernetes API types, never a datastore, dataplane or client library.
package api
