// Package desired holds the contract between calc and the host dataplanes:
// the whole desired state of one host's policy dataplane as plain data.
// calc produces a State; dataplane/nft programs it. The package is a leaf: it
// imports only the standard library.
//
// A State has four keyed collections and a config:
//
//   - IPSets, keyed by ID. A selector's set is keyed by the selector's
//     unique ID ("s:..."), so equal selectors share one set; a CIDR list
//     (a rule's nets or notNets) by "c:" plus a hash of its sorted CIDRs
//     (CIDRSetID); a named port by "n:...". Members are addresses (a /32 or
//     /128 prefix), CIDRs, or address+protocol+port (named-port sets).
//   - Policies, keyed by PolicyID: inbound and outbound rules in order.
//   - Profiles, keyed by name: inbound and outbound rules in order.
//   - Endpoints, keyed by host interface name: the tiers that apply to the
//     endpoint, in evaluation order, each with its default action and its
//     ingress and egress policy IDs in order, then its profile IDs in order.
//
// Invariants (checked by State.Validate, which a dataplane calls before it
// programs anything):
//
//   - every IP set a rule references exists, with the type the reference
//     needs (IPSetIDs and NotIPSetIDs: Addrs or Nets; Nets/NotNets: Nets;
//     named ports: NamedPorts), and its members have that type;
//   - every policy an endpoint's tier references exists;
//   - a tier's default action is Deny or Pass; rule actions are Allow, Deny,
//     Log or Pass; IPVersion is 0, 4 or 6;
//   - numeric or named ports need a protocol with ports (TCP, UDP, SCTP or
//     UDPLite); ICMP matches need protocol ICMP (1) or ICMPv6 (58);
//   - endpoint interface names are 1-15 bytes.
//
// A profile an endpoint names but the state lacks is not an error: it is
// deny-all (fail closed), as Felix treats a missing profile.
//
// Evaluation semantics (compat §2.5), which every consumer implements:
// per endpoint and direction, tiers in order — only tiers with at least one
// policy for that direction take part; policies in order, rules in order;
// Allow accepts and ends evaluation; Deny drops; Log logs and continues;
// Pass leaves the tier; a tier whose policies decided nothing applies its
// default action (Deny drops, Pass continues); then profiles in order
// (Allow accepts, Deny drops, Pass leaves the profile); then drop.
//
// Equality is cheap: PolicyID and Member are comparable (map keys); the
// other types have Equal methods and deep Clone methods, so a consumer
// diffs two States object by object. Values reachable from a State handed
// to a consumer are treated as immutable: to change a policy, set or
// endpoint, put a new value in the map (consumers may recognise unchanged
// objects by identity). Validate checks everything; ValidateConfig,
// ValidateIPSet, ValidatePolicy, ValidateProfile and ValidateEndpoint check
// one object each, for consumers that validate only what changed.
package desired
