// Package nat is the NAT-outgoing dataplane (IPPool.natOutgoing, compat
// §6.2): workload traffic whose source is in a natOutgoing pool and whose
// destination is outside every pool leaves the host masqueraded to the
// address of the interface it goes out of.
//
// Plan is pure: IP pools in, Desired (the natOutgoing CIDRs and all pool
// CIDRs, IPv4, masked and sorted) out. Table programs it as
//
//	table ip brindle-nat {
//	  set masq-pools { type ipv4_addr; flags interval; ... }
//	  set all-pools  { type ipv4_addr; flags interval; ... }
//	  chain postrouting {
//	    type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr @masq-pools ip daddr != @all-pools counter masquerade comment "brindle nat-outgoing v1"
//	  }
//	}
//
// Contract:
//   - Ours only. The table is ours (family ip, name Config.Table); the
//     policy dataplane's `table inet brindle` and everything else are never
//     touched.
//   - Declarative. Apply takes the whole Desired and reads the table back.
//     Equal: nothing is written (Stats().Writes() does not move). Set
//     contents differ: each differing set is flushed and refilled in one
//     transaction. Structure differs (missing, damaged, an extra rule):
//     the table is deleted and re-created in one transaction. No
//     natOutgoing pool: the table is deleted; deleting what is gone is a
//     no-op.
//   - Nothing before the first Apply: Resync does nothing until then.
//   - Overlapping or adjacent pool CIDRs are merged into ranges (the
//     kernel's interval sets reject overlaps).
//
// Not done: IPv6 pools (an ip6 table), natOutgoingAddress (SNAT to a fixed
// address) and natPortRange.
//
// Concurrency: one mutex serialises Apply, Resync and Counter.
package nat
