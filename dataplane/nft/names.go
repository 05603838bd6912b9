package nft

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"

	"github.com/brindle-net/brindle/desired"
)

// Every chain and verdict map in our table carries this prefix (sets are
// named by setName). Whatever the table holds that is not desired is
// removed by the first Apply.
const prefix = "brindle-"

// Fixed chain and map names.
const (
	chainPreEgress  = prefix + "prerouting-egress"
	chainFwdIngress = prefix + "forward-ingress"
	chainInHost     = prefix + "input-host"
	chainFromWLDisp = prefix + "from-wl-dispatch"
	chainToWLDisp   = prefix + "to-wl-dispatch"
	mapFromWL       = prefix + "from-wl"
	mapToWL         = prefix + "to-wl"
)

// hashID is a short stable hash: 16 hex digits of SHA-256.
func hashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// endpointChain names the chain for traffic from (egress, "fw") or to
// (ingress, "tw") a workload interface.
func endpointChain(iface string, ingress bool) string {
	if ingress {
		return prefix + "tw-" + iface
	}
	return prefix + "fw-" + iface
}

// policyChain names a policy's inbound ("pi") or outbound ("po") chain.
func policyChain(id desired.PolicyID, inbound bool) string {
	k := id.Tier + "\x00" + id.Namespace + "\x00" + id.Name + "\x00" + id.Kind
	if inbound {
		return prefix + "pi-" + hashID(k)
	}
	return prefix + "po-" + hashID(k)
}

// profileChain names a profile's inbound ("pri") or outbound ("pro") chain.
func profileChain(name string, inbound bool) string {
	if inbound {
		return prefix + "pri-" + hashID(name)
	}
	return prefix + "pro-" + hashID(name)
}

// Tier-index names (index.go): h is the index's hash, which covers the
// direction, the tier's policies in order and what each can match.
func indexChain(h string) string              { return prefix + "x-" + h }
func indexPortChain(h string, p uint8) string { return prefix + "x-" + h + "-" + protoNumber(p) }
func indexListChain(h, list string) string    { return prefix + "xl-" + hashID(h+"/"+list) }
func indexProtoMap(h string) string           { return "xp-" + h }
func indexPortMap(h string, p uint8) string   { return "xd-" + h + "-" + protoNumber(p) }

// setKind is the kernel shape of a set.
type setKind uint8

const (
	kindAddr4 setKind = iota + 1
	kindAddr6
	kindNet4
	kindNet6
	kindNamedPort4
	kindNamedPort6
	kindVmap      // ifname : verdict (the two dispatch maps)
	kindProtoVmap // inet_proto : verdict, intervals (a tier index)
	kindPortVmap  // inet_service : verdict, intervals (a tier index)
)

// verdictMap reports whether a set of this kind is a verdict map: its
// elements go to chains, so it is filled after the chains exist and
// deleted before them.
func (k setKind) verdictMap() bool {
	return k == kindVmap || k == kindProtoVmap || k == kindPortVmap
}

// interval reports whether a set of this kind holds intervals.
func (k setKind) interval() bool {
	return k == kindNet4 || k == kindNet6 || k == kindProtoVmap || k == kindPortVmap
}

var kindTags = map[setKind]string{
	kindAddr4: "a4", kindAddr6: "a6", kindNet4: "c4", kindNet6: "c6",
	kindNamedPort4: "n4", kindNamedPort6: "n6",
}

func setKindFor(t desired.IPSetType, family int) setKind {
	k := map[desired.IPSetType]setKind{desired.Addrs: kindAddr4, desired.Nets: kindNet4, desired.NamedPorts: kindNamedPort4}[t]
	if family == 6 {
		k++
	}
	return k
}

// setName derives the kernel set name for one family of a desired set: a
// tag for type and family and a 64-bit hash of the ID (base64url), like
// "a4-Jx0k3vQ9b_E". The full ID is the set's comment. Equal IDs (equal
// selectors) share one set.
//
// Set names are short and carry no prefix (the table is ours): the kernel
// finds a set by name with a linear walk of the table's sets that takes
// the length of every name it passes (strlen), once per new set, per
// element batch and per rule that uses a set, which dominates a
// transaction that creates thousands of sets.
func setName(id string, t desired.IPSetType, family int) string {
	sum := sha256.Sum256([]byte(id))
	return kindTags[setKindFor(t, family)] + "-" + base64.RawURLEncoding.EncodeToString(sum[:8])
}
