package nft

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ruleSpec is one rule of our ruleset: its readable text and the netlink
// expressions that implement it, built together so they cannot disagree.
type ruleSpec struct {
	// id is a 64-bit FNV-1a hash of text and comment; it is stored in the rule's
	// userdata comment and is how a rule read back from the kernel is
	// recognised.
	id string
	// text is the nft-like rendering without the comment.
	text string
	// comment says where the rule comes from (for humans).
	comment string
	exprs   []expr.Any
	// anon are the anonymous sets the rule needs; anon[i].lookup is the
	// index in exprs of the Lookup that uses it.
	anon []anonSet
}

// anonSet is a constant anonymous set (of ports, an interval set, unless
// keyType is set).
type anonSet struct {
	lookup  int
	keyType *nftables.SetDatatype
	elems   []nftables.SetElement
}

// userdataComment is what is stored in the rule's userdata.
func (r *ruleSpec) userdataComment() string {
	if r.comment == "" {
		return r.id
	}
	c := r.id + " " + r.comment
	if len(c) > maxCommentLen {
		c = c[:maxCommentLen]
	}
	return c
}

// maxCommentLen keeps comments within nft's 128-byte comment limit.
const maxCommentLen = 127

// rb builds one rule: each method appends a match or statement both as
// text and as expressions.
type rb struct {
	text []string
	ex   []expr.Any
	anon []anonSet
}

func (b *rb) add(text string, e ...expr.Any) {
	if b.ex == nil {
		b.text = make([]string, 0, 8)
		b.ex = make([]expr.Any, 0, 24)
	}
	b.text = append(b.text, text)
	b.ex = append(b.ex, e...)
}

func (b *rb) done(comment string) *ruleSpec {
	text := strings.Join(b.text, " ")
	h := fnv.New64a()
	h.Write([]byte(text))
	h.Write([]byte{0})
	h.Write([]byte(comment))
	return &ruleSpec{id: fmt.Sprintf("%016x", h.Sum64()), text: text, comment: comment, exprs: b.ex, anon: b.anon}
}

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func cmpNeq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: data} }

func meta(key expr.MetaKey) *expr.Meta { return &expr.Meta{Key: key, Register: 1} }

func (b *rb) nfproto(family int) {
	switch family {
	case 4:
		b.add("meta nfproto ipv4", meta(expr.MetaKeyNFPROTO), cmpEq([]byte{unix.NFPROTO_IPV4}))
	case 6:
		b.add("meta nfproto ipv6", meta(expr.MetaKeyNFPROTO), cmpEq([]byte{unix.NFPROTO_IPV6}))
	}
}

func (b *rb) l4proto(p uint8, negate bool) {
	if negate {
		b.add(fmt.Sprintf("meta l4proto != %s", protoName(p)), meta(expr.MetaKeyL4PROTO), cmpNeq([]byte{p}))
		return
	}
	b.add(fmt.Sprintf("meta l4proto %s", protoName(p)), meta(expr.MetaKeyL4PROTO), cmpEq([]byte{p}))
}

// ifname matches an interface name exactly, or by prefix when wildcard.
func (b *rb) ifname(in bool, name string, wildcard bool) {
	key, word := expr.MetaKeyOIFNAME, "oifname"
	if in {
		key, word = expr.MetaKeyIIFNAME, "iifname"
	}
	data := []byte(name)
	shown := name
	if wildcard {
		shown += "*"
	} else {
		data = ifnameKey(name)
	}
	b.add(fmt.Sprintf("%s %q", word, shown), meta(key), cmpEq(data))
}

// vmap dispatches through a verdict map keyed by interface name.
func (b *rb) vmap(in bool, set string) {
	key, word := expr.MetaKeyOIFNAME, "oifname"
	if in {
		key, word = expr.MetaKeyIIFNAME, "iifname"
	}
	b.add(fmt.Sprintf("%s vmap @%s", word, set), meta(key),
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: set})
}

// markVmap dispatches through a verdict map keyed by the mark's class bits.
func (b *rb) markVmap(mask uint32, set string) {
	b.add(fmt.Sprintf("meta mark & %#08x vmap @%s", mask, set), meta(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: set})
}

// markInSet matches when (mark & mask) | or is in a mark set; or must
// not overlap mask. nft lists it as "meta mark & <mask> | <or> @set"
// (with or 0: "meta mark & <mask> @set").
func (b *rb) markInSet(mask, or uint32, set string) {
	text := fmt.Sprintf("meta mark & %#08x", mask)
	if or != 0 {
		text += fmt.Sprintf(" | %#08x", or)
	}
	b.add(text+" @"+set, meta(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: binaryutil.NativeEndian.PutUint32(or)},
		&expr.Lookup{SourceRegister: 1, SetName: set})
}

// markClass writes value v into the mark bits mask, keeping the others.
func (b *rb) markClass(mask, v uint32) {
	b.add(fmt.Sprintf("meta mark set meta mark & %#08x | %#08x", ^mask, v), meta(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^mask), Xor: binaryutil.NativeEndian.PutUint32(v)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
}

// l4protoVmap dispatches through an interval verdict map keyed by the
// transport protocol.
func (b *rb) l4protoVmap(set string) {
	b.add("meta l4proto vmap @"+set, meta(expr.MetaKeyL4PROTO),
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: set})
}

// dportVmap dispatches through an interval verdict map keyed by the
// transport destination port.
func (b *rb) dportVmap(set string) {
	b.add("th dport vmap @"+set,
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: set})
}

func (b *rb) ctState(bits uint32, text string) {
	b.add("ct state "+text,
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		cmpNeq(make([]byte, 4)))
}

// markTest matches when (mark & bits) != 0, or == 0 when zero is true.
func (b *rb) markTest(bits uint32, zero bool) {
	op, word := expr.CmpOpNeq, "!="
	if zero {
		op, word = expr.CmpOpEq, "=="
	}
	b.add(fmt.Sprintf("meta mark & %#08x %s 0", bits, word), meta(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)})
}

// markSet sets bits in the mark; markClear clears them.
func (b *rb) markSet(bits uint32) {
	b.add(fmt.Sprintf("meta mark set meta mark | %#08x", bits), meta(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bits), Xor: binaryutil.NativeEndian.PutUint32(bits)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
}

func (b *rb) markClear(bits uint32) {
	b.add(fmt.Sprintf("meta mark set meta mark & %#08x", ^bits), meta(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bits), Xor: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
}

// addrOffset returns the network-header offset and length of the source
// or destination address.
func addrOffset(family int, src bool) (uint32, uint32) {
	if family == 6 {
		if src {
			return 8, 16
		}
		return 24, 16
	}
	if src {
		return 12, 4
	}
	return 16, 4
}

func addrWord(family int, src bool) string {
	w := "ip"
	if family == 6 {
		w = "ip6"
	}
	if src {
		return w + " saddr"
	}
	return w + " daddr"
}

func loadAddr(family int, src bool, reg uint32) *expr.Payload {
	off, l := addrOffset(family, src)
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg,
		Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l}
}

// addrInSet matches the address against a named set.
func (b *rb) addrInSet(family int, src bool, set string, negate bool) {
	op := ""
	if negate {
		op = "!= "
	}
	b.add(fmt.Sprintf("%s %s@%s", addrWord(family, src), op, set),
		loadAddr(family, src, 1),
		&expr.Lookup{SourceRegister: 1, SetName: set, Invert: negate})
}

// namedPortInSet matches address . l4proto . port against a named-port set.
func (b *rb) namedPortInSet(family int, src bool, set string, negate bool) {
	op := ""
	if negate {
		op = "!= "
	}
	portWord, portOff := "th dport", uint32(2)
	if src {
		portWord, portOff = "th sport", 0
	}
	// Concatenated keys use consecutive 32-bit registers: the address
	// fills NFT_REG32_00 onwards, then protocol and port one each.
	protoReg, portReg := uint32(unix.NFT_REG32_01), uint32(unix.NFT_REG32_02)
	if family == 6 {
		protoReg, portReg = unix.NFT_REG32_04, unix.NFT_REG32_05
	}
	b.add(fmt.Sprintf("%s . meta l4proto . %s %s@%s", addrWord(family, src), portWord, op, set),
		loadAddr(family, src, 1),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: portReg,
			Base: expr.PayloadBaseTransportHeader, Offset: portOff, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set, Invert: negate})
}

// ports matches the transport port against ranges.
func (b *rb) ports(src bool, ranges []portRange, negate bool) {
	word, off := "th dport", uint32(2)
	if src {
		word, off = "th sport", 0
	}
	load := &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1,
		Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}
	op, cop := "", expr.CmpOpEq
	if negate {
		op, cop = "!= ", expr.CmpOpNeq
	}
	be := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	switch {
	case len(ranges) == 1 && ranges[0].min == ranges[0].max:
		b.add(fmt.Sprintf("%s %s%d", word, op, ranges[0].min), load,
			&expr.Cmp{Op: cop, Register: 1, Data: be(ranges[0].min)})
	case len(ranges) == 1:
		b.add(fmt.Sprintf("%s %s%d-%d", word, op, ranges[0].min, ranges[0].max), load,
			&expr.Range{Op: cop, Register: 1, FromData: be(ranges[0].min), ToData: be(ranges[0].max)})
	default:
		var parts []string
		var elems []nftables.SetElement
		for _, r := range ranges {
			if r.min == r.max {
				parts = append(parts, fmt.Sprint(r.min))
			} else {
				parts = append(parts, fmt.Sprintf("%d-%d", r.min, r.max))
			}
			elems = append(elems, nftables.SetElement{Key: be(r.min)})
			if r.max < 0xffff {
				elems = append(elems, nftables.SetElement{Key: be(r.max + 1), IntervalEnd: true})
			}
		}
		b.add(fmt.Sprintf("%s %s{ %s }", word, op, strings.Join(parts, ", ")), load)
		b.anon = append(b.anon, anonSet{lookup: len(b.ex), elems: elems})
		b.ex = append(b.ex, &expr.Lookup{SourceRegister: 1, Invert: negate})
	}
}

// icmp matches ICMP type (and code); negate matches anything else.
func (b *rb) icmp(v6 bool, typ uint8, code *uint8, negate bool) {
	word := "icmp"
	if v6 {
		word = "icmpv6"
	}
	op, cop := "", expr.CmpOpEq
	if negate {
		op, cop = "!= ", expr.CmpOpNeq
	}
	if code == nil {
		b.add(fmt.Sprintf("%s type %s%d", word, op, typ),
			&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: cop, Register: 1, Data: []byte{typ}})
		return
	}
	// Type and code are adjacent bytes: one two-byte comparison matches
	// (or, negated, excludes) the pair.
	b.add(fmt.Sprintf("%s type . %s code %s%d . %d", word, word, op, typ, *code),
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Cmp{Op: cop, Register: 1, Data: []byte{typ, *code}})
}

// icmpv6Types matches any of the given ICMPv6 types.
func (b *rb) icmpv6Types(types ...uint8) {
	var parts []string
	var elems []nftables.SetElement
	for _, t := range types {
		parts = append(parts, fmt.Sprint(t))
		elems = append(elems, nftables.SetElement{Key: []byte{t}})
	}
	b.add(fmt.Sprintf("icmpv6 type { %s }", strings.Join(parts, ", ")),
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1})
	kt := nftables.TypeICMP6Type
	b.anon = append(b.anon, anonSet{lookup: len(b.ex), keyType: &kt, elems: elems})
	b.ex = append(b.ex, &expr.Lookup{SourceRegister: 1})
}

func (b *rb) log(prefix string) {
	b.add(fmt.Sprintf("log prefix %q", prefix),
		&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(prefix)})
}

func (b *rb) verdict(kind expr.VerdictKind, chain string) {
	var text string
	switch kind {
	case expr.VerdictAccept:
		text = "accept"
	case expr.VerdictDrop:
		text = "drop"
	case expr.VerdictReturn:
		text = "return"
	case expr.VerdictJump:
		text = "jump " + chain
	case expr.VerdictGoto:
		text = "goto " + chain
	}
	b.add(text, &expr.Verdict{Kind: kind, Chain: chain})
}

type portRange struct{ min, max uint16 }

func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	}
	return fmt.Sprint(p)
}

// ifnameKey is an interface name as the kernel compares it: NUL-padded to
// IFNAMSIZ.
func ifnameKey(name string) []byte {
	k := make([]byte, unix.IFNAMSIZ)
	copy(k, name)
	return k
}
