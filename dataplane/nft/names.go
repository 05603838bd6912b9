package nft

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/brindle-net/brindle/desired"
)

// Every chain and verdict map in our table carries this prefix (sets are
// named by setName). Whatever the table holds that is not desired is
// removed by the first Apply.
const prefix = "brindle-"

// Fixed chain and map names. The policy table's (B) are plain names; the
// classify table's (A) are keys (see inA).
const (
	chainPreEgress   = prefix + "prerouting-egress"
	chainFwdIngress  = prefix + "forward-ingress"
	chainInHost      = prefix + "input-host"
	chainFromWLDisp  = prefix + "from-wl-dispatch"
	chainToWLDisp    = prefix + "to-wl-dispatch"
	mapFromClass     = prefix + "from-class"
	mapToClass       = prefix + "to-class"
	chainPreClassify = keyA + prefix + "prerouting-classify"
	chainFwdClassify = keyA + prefix + "forward-classify"
	mapFromWL        = keyA + prefix + "from-wl"
	mapToWL          = keyA + prefix + "to-wl"
	// The generic class chains and their guard sets (generic.go).
	chainFromGeneric = prefix + "fg"
	chainToGeneric   = prefix + "tg"
	setFromGeneric   = prefix + "from-generic"
	setToGeneric     = prefix + "to-generic"
)

// The model holds the objects of both tables in one namespace of keys: an
// object of the policy table (B) is keyed by its name, one of the
// classify table (A) by keyA followed by its name. Kernel names cannot
// contain the byte keyA (a NUL-terminated netlink string can, but nft
// cannot type it, and we create none), so keys never collide.
const keyA = "\x01"

// inA reports whether a model key names an object of the classify table.
func inA(key string) bool { return len(key) > 0 && key[0] == keyA[0] }

// objName is the kernel name of a model key.
func objName(key string) string {
	if inA(key) {
		return key[1:]
	}
	return key
}

// classChain names a class chain of the policy table: the chain every
// endpoint whose chain renders to the same rules (in one direction)
// shares; h hashes those rules.
func classChain(h string, ingress bool) string { return classChainPrefix(ingress) + h }

func classChainPrefix(ingress bool) string {
	if ingress {
		return prefix + "tc-"
	}
	return prefix + "fc-"
}

// isClassChain reports whether a chain of the policy table is a class
// chain (classChain).
func isClassChain(name string) bool {
	return strings.HasPrefix(name, classChainPrefix(true)) || strings.HasPrefix(name, classChainPrefix(false))
}

// classMarkChain keys the classify table's chain that writes class id n
// (1-based) of one direction into the mark.
func classMarkChain(n uint32, ingress bool) string {
	if ingress {
		return keyA + prefix + "mark-to-" + strconv.FormatUint(uint64(n), 10)
	}
	return keyA + prefix + "mark-from-" + strconv.FormatUint(uint64(n), 10)
}

// hashID is a short stable hash: 16 hex digits of SHA-256.
func hashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
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
	kindVmap      // ifname : verdict (the classify table's two maps)
	kindMarkVmap  // mark : verdict (the policy table's two class maps)
	kindProtoVmap // inet_proto : verdict, intervals (a tier index)
	kindPortVmap  // inet_service : verdict, intervals (a tier index)
	kindMark      // mark (the policy table's two generic-class guard sets)
)

// verdictMap reports whether a set of this kind is a verdict map: its
// elements go to chains, so it is filled after the chains exist and
// deleted before them.
func (k setKind) verdictMap() bool {
	return k == kindVmap || k == kindMarkVmap || k == kindProtoVmap || k == kindPortVmap
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
