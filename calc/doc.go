// Package calc is the host agent's pure core: it turns datastore updates
// into this host's desired policy dataplane (package desired). Like raft's
// RawNode it is a state machine and nothing else — no I/O, no clock, no
// goroutines, no locks; the agent's loop owns it, feeds it and applies what
// it returns.
//
// # Interface
//
//	c := calc.New(calc.Config{Hostname: "node-1"})
//	err := c.OnUpdate(calc.Update{Kind: "WorkloadEndpoint", Namespace: ns, Name: n, Object: wep})
//	c.InSync()
//	s := c.State()             // the whole desired.State (shared: read only)
//	routes := calc.Routes(&s)  // this host's workload routes by interface
//
// An Update carries the current value of one object (a pointer to its api
// type) or nil when it is deleted or invalid. Existence is decided from the
// Object alone, never from the kind of datastore event, so repeated
// updates, spurious deletes and any delivery order are all fine. Kinds
// consumed: Tier, NetworkPolicy, GlobalNetworkPolicy, Profile,
// WorkloadEndpoint, HostEndpoint, NetworkSet, GlobalNetworkSet,
// FelixConfiguration ("default" and "node.<hostname>"). Others (Node,
// IPPool, the stored KubernetesNetworkPolicy originals — their
// "knp.default.*" translations arrive as NetworkPolicy) are ignored.
//
// OnUpdate returns an error for an object calc cannot use (a selector,
// CIDR, port or protocol that does not compile, a rule the dataplane
// cannot express, an unusable interface name, a wrong Go type); the object
// is then treated as absent, as Felix's validation filter does, and calc
// stays consistent. The datastore validates on write, so this is rare.
//
// State returns a snapshot of the whole desired state. Its cost follows
// what changed since the previous call, not the size of the state: calc
// records which IP sets, policies, profiles and endpoints changed, rebuilds
// only those, and makes a collection in which something changed as an
// edit of the previous State's desired.Map (a sharded map: the edit copies
// the shards it changes). A collection with no change is the previous
// State's map itself, and an object rebuilt equal keeps its identity (the
// same member map, rule and endpoint slices), which is how consumers
// recognise unchanged objects.
// Snapshots therefore share structure: neither calc nor the caller may
// modify anything reachable from a returned State (the desired types'
// Clone methods give private copies). An IP set changed after a State
// handed it out is copied once before its first write (copy-on-write):
// that copy costs the set's size, the one cost of a label change that
// grows with the cluster. The output is a function of the current set of
// objects only, never of the order they arrived in; the tests replay every
// case forwards, backwards, squashed, with empty states between and
// shuffled, and check that a State keeps its contents after later changes.
//
// # What the state holds
//
//   - Endpoints: every workload endpoint whose spec.node is this host, by
//     spec.interfaceName, with its addresses, its tiers in order (only
//     tiers with a policy selecting it; each with the default action and
//     the ingress and egress policies in order) and its profiles in order.
//     Two endpoints claiming one interface are both left out, so the
//     interface drops everything until the conflict is gone.
//   - Policies: the policies whose selector matches at least one local
//     endpoint. A policy selecting no local endpoint produces nothing.
//     preDNAT and doNotTrack policies apply to host endpoints only and
//     never become active.
//   - Profiles: the profiles local endpoints name and that exist. A named
//     profile that does not exist is left out of Profiles; the endpoint
//     still names it, which desired defines as deny-all (fail closed, as
//     Felix's DummyDropRules). "projectcalico-default-allow" exists unless
//     a stored profile replaces it.
//   - IPSets: exactly the sets the rules of active policies and profiles
//     use; no other set is computed. A rule selector gives a Nets set (ID:
//     the selector's unique ID) of the addresses of every workload
//     endpoint (ipNetworks) and host endpoint (expectedIPs) in the cluster
//     it matches, and the CIDRs of every NetworkSet and GlobalNetworkSet
//     it matches. A named port gives a NamedPorts set ("n:" + hash of the
//     side's selector and the port name) of address+protocol+port of the
//     endpoints that match the side's selector (all endpoints without one)
//     and serve that name. nets/notNets give a Nets set keyed by
//     desired.CIDRSetID.
//   - Config: interface prefixes (Config.InterfacePrefixes, else
//     FelixConfiguration node.<host>, else default, else "cali") and the
//     endpoint-to-host action (same precedence, default Drop).
//
// # Meaning
//
// Policies, profiles and rules are compiled by package policy — the same
// scoping of selectors (namespace, service accounts), types defaulting,
// ordering (policy.ComparePolicies, policy.CompareTiers), protocol and
// port normalisation — so the dataplane and the reference evaluator cannot
// disagree about what a policy means. Endpoints are converted with
// policy.WorkloadFromAPI, HostFromAPI and NetworkSetFromAPI; an entity's
// labels are its own over its profiles' labelsToApply (the entity's own
// value wins, then the earlier profile's). Rules with a Kubernetes services
// match are left out (without service data they never match, as in the
// evaluator); HTTP matches are ignored.
//
// A policy in a tier that does not exist is not dropped (that would fail
// open): its tier sorts after every existing tier, by name, with default
// action Deny — Felix's treatment of an invalid tier. (policy.Compile, which
// checks a whole static world, rejects such a world instead.) The built-in
// tiers default, kube-admin and kube-baseline always exist; a stored Tier
// of the same name replaces the built-in one.
//
// # Incrementality
//
// Two selector.Index instances hold selector→item matches: one matches
// every policy's selector against the local endpoints, the other matches
// the rule selectors of active policies and profiles against every
// endpoint and network set in the cluster. Profiles are the index's
// parents, so labels inherited from them (labelsToApply) take part. The
// index finds candidates through the labels a selector requires, so one
// endpoint's label change re-evaluates only the selectors that could match
// it, and a newly active selector is evaluated only against items carrying
// its required labels. Policies activate at their first local match and
// take a reference on each set their rules use; a set is built when its
// first reference is taken and dropped with its last. Member counts are
// reference counted, so an address held by two matching endpoints stays
// until both go.
package calc
