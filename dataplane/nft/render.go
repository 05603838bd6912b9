package nft

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/desired"
)

// Render returns the ruleset Apply would program for s, as readable
// nft-like text (`nft list table` style, with each rule's origin as its
// comment). It is pure: it touches no kernel. It is what `brindle node
// --dump` prints and what the golden tests compare.
func Render(cfg Config, s *desired.State) (string, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return "", fmt.Errorf("nft config: %w", err)
	}
	if err := s.Validate(); err != nil {
		return "", fmt.Errorf("desired state: %w", err)
	}
	m, err := newBuilder(cfg).build(s)
	if err != nil {
		return "", fmt.Errorf("desired state: %w", err)
	}
	return m.render(cfg.TableName), nil
}

// render renders both tables: the policy table, then the classify table
// (table + "-classify").
func (m *model) render(table string) string {
	var b strings.Builder
	m.renderTable(&b, table, false)
	m.renderTable(&b, table+classifySuffix, true)
	return b.String()
}

func (m *model) renderTable(b *strings.Builder, table string, a bool) {
	fmt.Fprintf(b, "table inet %s {\n", table)
	for _, name := range slices.Sorted(maps.Keys(m.sets)) {
		if inA(name) == a {
			m.sets[name].render(b)
		}
	}
	var chains []*chainSpec
	for _, c := range m.chains {
		if inA(c.name) == a {
			chains = append(chains, c)
		}
	}
	slices.SortFunc(chains, func(a, b *chainSpec) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), strings.Compare(a.name, b.name))
	})
	for _, c := range chains {
		fmt.Fprintf(b, "\tchain %s {\n", objName(c.name))
		switch c.hook {
		case hookPreroutingEgress:
			b.WriteString("\t\ttype filter hook prerouting priority filter; policy accept;\n")
		case hookForwardIngress:
			b.WriteString("\t\ttype filter hook forward priority filter + 1; policy accept;\n")
		case hookInputHost:
			b.WriteString("\t\ttype filter hook input priority filter + 1; policy accept;\n")
		case hookPreroutingClassify:
			b.WriteString("\t\ttype filter hook prerouting priority filter - 1; policy accept;\n")
		case hookForwardClassify:
			b.WriteString("\t\ttype filter hook forward priority filter; policy accept;\n")
		}
		for _, r := range c.rules {
			b.WriteString("\t\t" + r.text)
			if r.comment != "" {
				fmt.Fprintf(b, " comment %q", r.comment)
			}
			b.WriteString("\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
}

var kindTypes = map[setKind]string{
	kindAddr4: "ipv4_addr", kindAddr6: "ipv6_addr",
	kindNet4: "ipv4_addr", kindNet6: "ipv6_addr",
	kindNamedPort4: "ipv4_addr . inet_proto . inet_service",
	kindNamedPort6: "ipv6_addr . inet_proto . inet_service",
	kindVmap:       "ifname : verdict",
	kindMarkVmap:   "mark : verdict",
	kindMark:       "mark",
	kindProtoVmap:  "inet_proto : verdict",
	kindPortVmap:   "inet_service : verdict",
}

func (s *setSpec) render(b *strings.Builder) {
	word := "set"
	if s.kind.verdictMap() {
		word = "map"
	}
	fmt.Fprintf(b, "\t%s %s {\n\t\ttype %s\n", word, objName(s.name), kindTypes[s.kind])
	if s.kind.interval() {
		b.WriteString("\t\tflags interval\n")
	}
	if s.comment != "" {
		fmt.Fprintf(b, "\t\tcomment %q\n", s.comment)
	}
	if len(s.elems) > 0 {
		es := slices.Collect(maps.Values(s.elems))
		slices.SortFunc(es, func(a, b elem) int { return strings.Compare(string(a.key), string(b.key)) })
		var parts []string
		for _, e := range es {
			parts = append(parts, s.renderElem(e))
		}
		if !s.kind.interval() {
			slices.Sort(parts)
		}
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(parts, ", "))
	}
	b.WriteString("\t}\n")
}

func (s *setSpec) renderElem(e elem) string {
	addr := func(k []byte) string {
		a, ok := netip.AddrFromSlice(k)
		if !ok {
			return fmt.Sprintf("%x", k)
		}
		return a.String()
	}
	switch s.kind {
	case kindVmap:
		return fmt.Sprintf("%q : %s", strings.TrimRight(string(e.key), "\x00"), e.verdict())
	case kindMark:
		if len(e.key) == 4 {
			return fmt.Sprintf("%#08x", binary.NativeEndian.Uint32(e.key))
		}
		return fmt.Sprintf("%x", e.key)
	case kindMarkVmap:
		if len(e.key) == 4 {
			return fmt.Sprintf("%#08x : %s", binary.NativeEndian.Uint32(e.key), e.verdict())
		}
		return fmt.Sprintf("%x : %s", e.key, e.verdict())
	case kindProtoVmap, kindPortVmap:
		// Keys are big-endian numbers; a missing end runs to the top.
		num := func(k []byte) int {
			v := 0
			for _, c := range k {
				v = v<<8 | int(c)
			}
			return v
		}
		lo, hi := num(e.key), 1<<(8*len(e.key))-1
		if e.end != nil {
			hi = num(e.end) - 1
		}
		r := fmt.Sprint(lo)
		if hi != lo {
			r = fmt.Sprintf("%d-%d", lo, hi)
		}
		return fmt.Sprintf("%s : %s", r, e.verdict())
	case kindNet4, kindNet6:
		start := addr(e.key)
		last := mustAddr(lastOfFamily(len(e.key)))
		if e.end != nil {
			last = mustAddr(e.end).Prev()
		}
		// Show a CIDR when the interval is one.
		for bits := 0; bits <= len(e.key)*8; bits++ {
			p := netip.PrefixFrom(mustAddr(e.key), bits)
			if p.Masked().Addr() == mustAddr(e.key) && lastAddr(p) == last {
				if bits == len(e.key)*8 {
					return start
				}
				return p.String()
			}
		}
		return start + "-" + last.String()
	case kindNamedPort4, kindNamedPort6:
		n := len(e.key) - 8
		return fmt.Sprintf("%s . %s . %d", addr(e.key[:n]), protoName(e.key[n]), binary.BigEndian.Uint16(e.key[n+4:]))
	}
	return addr(e.key)
}

func mustAddr(k []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(k)
	return a
}

func lastOfFamily(n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = 0xff
	}
	return k
}
