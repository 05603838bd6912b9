// Package policy is Brindle's reference policy evaluator: a plain statement
// of every packet's verdict, and why. It is the oracle the dataplane is
// tested against and the engine of `brindlectl policy check`.
//
// It has two layers.
//
// The compile layer (Compile, CompileTier, CompilePolicy, CompileProfile,
// CompileRule) turns api objects into a normalised Model: tiers in
// evaluation order, each with its default action and its policies in order;
// each policy with its scoped, parsed selector, the directions it applies to
// and its rules; each rule with its protocol as a number, ports as ranges
// plus named ports, CIDRs parsed and masked, ICMP matches, and its source
// and destination selectors already rewritten for namespace and
// service-account scoping exactly as Calico does (compat §2.3:
// ScopeEntitySelector, ScopePolicySelector). The ordering (ComparePolicies,
// CompareTiers) is exported too. The host agent's calc package compiles
// policy through this layer, so the dataplane and this oracle cannot
// disagree about what a policy means.
//
// The evaluator (NewEvaluator, Evaluator.Evaluate) runs a Model against a
// World (workload endpoints, host endpoints and network sets with their
// labels and addresses) for one Packet, and returns a Verdict per direction
// the packet crosses: egress of the source endpoint and ingress of the
// destination endpoint, for the endpoints that are workloads. Semantics are
// Calico's (compat §2.5): tiers in order, policies in order, rules in order;
// the first Allow or Deny decides, Log continues, Pass leaves the tier; a
// tier that has a policy selecting the endpoint for that direction and
// decides nothing ends in its default action; then the endpoint's profiles
// in order; then drop. A rule selector matches an address when any endpoint
// or network set holding that address matches it; an address outside every
// endpoint and network set matches no selector but satisfies every
// notSelector.
//
// Not modelled: connection tracking (every packet is evaluated as the first
// of its flow), host-endpoint policy (host endpoints and network sets are
// only things rule selectors match; preDNAT and doNotTrack policies are left
// out of workload evaluation, as Felix does), failsafe ports, HTTP matches
// (ignored, as the L3/L4 dataplane ignores them) and `services` matches
// (which need Kubernetes Service data: such a rule never matches).
//
// The package is pure: no I/O, no goroutines, no clocks. An Evaluator is
// immutable after NewEvaluator and safe for concurrent use.
package policy
