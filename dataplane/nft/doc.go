// Package nft programs a host's workload policy into nftables, through
// netlink (github.com/google/nftables), from a desired.State.
//
// # Contract
//
//   - New touches nothing. The first Apply reads our table back and makes
//     it hold exactly the desired ruleset, removing anything else in it
//     (the table is ours: every object in it carries the "brindle-"
//     prefix). The agent calls Apply only after the datastore is in sync.
//   - Apply(state) is declarative: one atomic nftables transaction (one
//     netlink batch) that changes only what differs from what the kernel
//     holds. An unchanged state sends nothing (Writes counts operations).
//     A label change that adds one address to one set is one element add.
//     An invalid state is rejected before anything is sent.
//   - Resync reads the table back and repairs drift (a deleted table,
//     chain, rule, set or element; foreign objects in our table).
//   - A failed transaction changes nothing in the kernel; the next Apply
//     or Resync reads the kernel back before diffing.
//   - Render is the pure text rendering of what Apply programs.
//
// # Layout (table inet brindle)
//
// Base chains: egress policy once, before routing, for every packet from a
// workload; then ingress policy (forwarded) or the host action (input):
//
//	brindle-prerouting-egress  prerouting, priority filter    iifname "cali*" jump brindle-from-wl-dispatch
//	brindle-forward-ingress    forward,    priority filter+1  oifname "cali*" jump brindle-to-wl-dispatch
//	brindle-input-host         input,      priority filter+1  iifname "cali*" drop|accept|return (DefaultEndpointToHostAction)
//
// The dispatch chains accept established/related, drop invalid, dispatch
// through a verdict map keyed by interface name (iifname vmap
// @brindle-from-wl / oifname vmap @brindle-to-wl, each element a goto to
// the endpoint's chain), and end with `iifname "cali*" drop`: an interface
// with our prefix and no endpoint drops everything (fail closed).
//
// Per endpoint: brindle-fw-<iface> (egress, traffic from the workload) and
// brindle-tw-<iface> (ingress). Per policy: brindle-pi-<hash> (inbound) and
// brindle-po-<hash> (outbound). Per profile: brindle-pri-<hash> and
// brindle-pro-<hash>. Sets: <a|c|n><4|6>-<base64url hash of the set ID>
// (addresses, CIDR intervals, address.protocol.port), with the full ID as
// the set's comment; a set exists only while a rule uses it.
//
// # Evaluation (compat §2.5)
//
// An endpoint chain runs the endpoint's tiers in order, and in each tier
// jumps to its policies' chains in order. In a policy chain, Allow is a
// plain accept: it ends the base chain it is in, so the egress base chain
// is left and the ingress (or host) base chain that follows still runs.
// Deny is drop. Log logs and continues. Pass sets the pass mark bit and
// returns; the endpoint chain skips the tier's remaining policies and its
// end-of-tier drop while the bit is set, and clears it before the next
// tier. A tier whose policies decided nothing drops (default action Deny)
// or falls through (Pass). Then the profiles' chains run in order (a
// missing profile is a drop), then a final drop.
//
// A tier with at least Config.IndexMinPolicies policies for an endpoint
// and direction is reached through a tier index (index.go): verdict maps
// by protocol and destination port lead to the list of only the policies
// that can match, in order, so a new flow does not walk every policy.
//
// Rule compilation: all criteria of a rule are ANDed in one nft rule;
// numeric ports and named-port sets are ORed by emitting one rule per
// alternative; a rule naming IP sets with no IPVersion gets an IPv4 and an
// IPv6 variant, and a variant whose required set has no members of that
// family is left out.
//
// # Transactions
//
// Order inside a transaction (make before break): table; new sets and
// element changes; new chains; rewritten chains (flush + add); verdict-map
// elements; obsolete chains flushed then deleted; obsolete sets deleted.
// Rules carry a hash of their rendering in their userdata comment, which is
// how rules read back from the kernel are compared. A chain whose rules
// differ is rewritten whole.
//
// Concurrency: a Dataplane's methods are serialised by a mutex.
package nft
