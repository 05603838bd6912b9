// Package deptest holds the dependency test that keeps Brindle's layering
// honest: the pure packages (selector, api, policy, desired, calc) must never
// reach etcd, netlink, nftables, GoBGP or client-go. It has no code of its
// own.
package deptest
