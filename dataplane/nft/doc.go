// Package nft programs a host's workload policy into nftables, through
// netlink (github.com/google/nftables), from a desired.State.
//
// # Contract
//
//   - New touches nothing. The first Apply reads our two tables back and
//     makes them hold exactly the desired ruleset, removing anything else
//     in them (the tables are ours: every chain and map in them carries the
//     "brindle-" prefix). The agent calls Apply only after the datastore is
//     in sync.
//   - Apply(state) is declarative: one atomic nftables transaction (one
//     netlink batch) that changes only what differs from what the kernel
//     holds. An unchanged state sends nothing (Writes counts operations).
//     A label change that adds one address to one set is one element add;
//     one that moves a local endpoint to a class that exists changes only
//     the classify table. An invalid state is rejected before anything is
//     sent, and so is one whose endpoints need more classes than
//     Config.ClassMask can number (the kernel keeps the last state).
//   - Resync reads the tables back and repairs drift (a deleted table,
//     chain, rule, set or element; foreign objects in our tables).
//   - A failed transaction changes nothing in the kernel; the next Apply
//     or Resync reads the kernel back before diffing.
//   - Render is the pure text rendering of what Apply programs.
//
// # Layout: two tables
//
// The kernel validates a table whole at commit whenever a transaction adds
// a rule or a jump/goto element to it, which with thousands of policies
// costs ~15 ms; it validates only the tables a transaction changed. So
// what an endpoint's label change usually touches lives in a small table
// of its own (A), and policy lives in another (B):
//
//	table inet <TableName>-classify (A)
//	  brindle-prerouting-classify  prerouting, priority filter-1
//	    ct state established,related accept; iifname vmap @brindle-from-wl;
//	    iifname "cali*" meta mark set meta mark & ~ClassMask
//	  brindle-forward-classify     forward,    priority filter    (the same with oifname, @brindle-to-wl)
//	  brindle-mark-from-<n> / brindle-mark-to-<n>: meta mark set meta mark & ~ClassMask | <n in ClassMask>
//	    (kept for id n once its class is evicted, for the id's next class)
//	table inet <TableName> (B)
//	  brindle-prerouting-egress  prerouting, priority filter    iifname "cali*" jump brindle-from-wl-dispatch
//	  brindle-forward-ingress    forward,    priority filter+1  oifname "cali*" jump brindle-to-wl-dispatch
//	  brindle-input-host         input,      priority filter+1  iifname "cali*" drop|accept|return (DefaultEndpointToHostAction)
//
// A's maps send each workload interface to the chain that writes its
// endpoint's class id (class.go) into the mark bits Config.ClassMask;
// an interface with our prefix and no endpoint gets no class. Egress and
// ingress classes use the same bits one after the other (prerouting,
// then forward). B's dispatch chains accept established/related, drop
// invalid, dispatch through a verdict map keyed by the class bits (meta
// mark & ClassMask vmap @brindle-from-class / @brindle-to-class, each
// element a goto to a class chain), and end with `iifname "cali*" drop`:
// no class, no endpoint: everything drops (fail closed). Both tables change
// in one transaction. The class bits stay set on the packet after our
// chains (routing, postrouting and egress see them): Brindle owns
// ClassMask and PassMark, as Calico's policy engine owns its
// iptablesMarkMask; other bits (kube-proxy's 0x4000/0x8000) are kept.
//
// Per class: brindle-fc-<hash> (egress, traffic from the workload) and
// brindle-tc-<hash> (ingress), shared by every endpoint whose chain has
// the same rules. Per policy: brindle-pi-<hash> (inbound) and
// brindle-po-<hash> (outbound). Per profile: brindle-pri-<hash> and
// brindle-pro-<hash>. Sets: <a|c|n><4|6>-<base64url hash of the set ID>
// (addresses, CIDR intervals, address.protocol.port), with the full ID as
// the set's comment; a set exists only while a rule uses it.
//
// # Evaluation (compat §2.5)
//
// An endpoint's class chain runs the endpoint's tiers in order, and in each tier
// jumps to its policies' chains in order. In a policy chain, Allow is a
// plain accept: it ends the base chain it is in, so the egress base chain
// is left and the ingress (or host) base chain that follows still runs.
// Deny is drop. Log logs and continues. Pass sets the pass mark bit and
// returns; the class chain skips the tier's remaining policies and its
// end-of-tier drop while the bit is set, and clears it before the next
// tier (only policies after one with a Pass rule test the bit). A tier whose policies decided nothing drops (default action Deny)
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
