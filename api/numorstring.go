package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Port is one entry of a rule's ports list: a single port number, an
// inclusive range "min:max", or the name of a named port. In JSON a single
// number is written as a number, everything else as a string.
type Port struct {
	MinPort  uint16
	MaxPort  uint16
	PortName string
}

// SinglePort returns the Port for one port number.
func SinglePort(p uint16) Port { return Port{MinPort: p, MaxPort: p} }

// PortRange returns the Port for an inclusive range.
func PortRange(lo, hi uint16) Port { return Port{MinPort: lo, MaxPort: hi} }

// NamedPort returns the Port that refers to an endpoint's named port.
func NamedPort(name string) Port { return Port{PortName: name} }

// IsNamed reports whether p refers to a named port.
func (p Port) IsNamed() bool { return p.PortName != "" }

// String renders p as written in YAML: "80", "80:90" or "http".
func (p Port) String() string {
	switch {
	case p.PortName != "":
		return p.PortName
	case p.MinPort == p.MaxPort:
		return strconv.Itoa(int(p.MinPort))
	default:
		return fmt.Sprintf("%d:%d", p.MinPort, p.MaxPort)
	}
}

// MarshalJSON writes a single port as a number, anything else as a string.
func (p Port) MarshalJSON() ([]byte, error) {
	if p.PortName == "" && p.MinPort == p.MaxPort {
		return json.Marshal(p.MinPort)
	}
	return json.Marshal(p.String())
}

// UnmarshalJSON accepts 80, "80", "80:90" and "name". Range checks and name
// syntax are left to validation so its errors can name the field; only
// values that cannot be a port at all fail here.
func (p *Port) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		v, err := strconv.ParseUint(n.String(), 10, 16)
		if err != nil {
			return fmt.Errorf("port %s is not a number from 0 to 65535", n)
		}
		*p = SinglePort(uint16(v))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("port must be a number, a \"min:max\" range or a port name, got %s", string(b))
	}
	parsed, err := ParsePort(s)
	if err != nil {
		return err
	}
	*p = parsed
	return nil
}

// ParsePort parses "80", "80:90" or a port name.
func ParsePort(s string) (Port, error) {
	if s == "" {
		return Port{}, fmt.Errorf("port must not be empty")
	}
	if lo, hi, ok := strings.Cut(s, ":"); ok {
		l, err1 := strconv.ParseUint(lo, 10, 16)
		h, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil {
			return Port{}, fmt.Errorf("port range %q must be \"min:max\" with numbers from 0 to 65535", s)
		}
		return PortRange(uint16(l), uint16(h)), nil
	}
	if s[0] >= '0' && s[0] <= '9' {
		v, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return Port{}, fmt.Errorf("port %q is not a number from 0 to 65535", s)
		}
		return SinglePort(uint16(v)), nil
	}
	return NamedPort(s), nil
}

// Protocol is a protocol name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or a
// number 1-255. In JSON a number stays a number.
type Protocol struct {
	Name   string
	Number uint8
}

// Protocol names as Calico v3 spells them.
const (
	ProtocolTCP     = "TCP"
	ProtocolUDP     = "UDP"
	ProtocolICMP    = "ICMP"
	ProtocolICMPv6  = "ICMPv6"
	ProtocolSCTP    = "SCTP"
	ProtocolUDPLite = "UDPLite"
)

// ProtocolFromString returns the Protocol for a name or a decimal number.
func ProtocolFromString(s string) Protocol {
	if v, err := strconv.ParseUint(s, 10, 8); err == nil {
		return Protocol{Number: uint8(v)}
	}
	return Protocol{Name: s}
}

// ProtocolFromNumber returns the Protocol for a protocol number.
func ProtocolFromNumber(n uint8) Protocol { return Protocol{Number: n} }

// String renders the protocol as written in YAML.
func (p Protocol) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Number))
}

var protocolNumbers = map[string]uint8{
	"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136,
}

// ToNumber returns the IP protocol number, or false for an unknown name.
// Names are matched case-insensitively, as Calico's v1 API wrote them in
// lowercase.
func (p Protocol) ToNumber() (uint8, bool) {
	if p.Name == "" {
		return p.Number, true
	}
	n, ok := protocolNumbers[strings.ToLower(p.Name)]
	return n, ok
}

// SupportsPorts reports whether rules with this protocol may match ports:
// TCP, UDP and SCTP (and UDPLite, which Calico also allows).
func (p Protocol) SupportsPorts() bool {
	n, ok := p.ToNumber()
	return ok && (n == 6 || n == 17 || n == 132 || n == 136)
}

// MarshalJSON writes a number as a number and a name as a string.
func (p Protocol) MarshalJSON() ([]byte, error) {
	if p.Name == "" {
		return json.Marshal(p.Number)
	}
	return json.Marshal(p.Name)
}

// UnmarshalJSON accepts a number or a string.
func (p *Protocol) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		v, err := strconv.ParseUint(n.String(), 10, 8)
		if err != nil || v == 0 {
			return fmt.Errorf("protocol number %s must be from 1 to 255", n)
		}
		*p = Protocol{Number: uint8(v)}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("protocol must be a name or a number, got %s", string(b))
	}
	*p = ProtocolFromString(s)
	return nil
}

// ASNumber is a BGP AS number. JSON accepts a plain number or the dotted
// "high.low" notation (RFC 5396), as Calico's v1 API did.
type ASNumber uint32

// ParseASNumber parses "64512" or "1.10".
func ParseASNumber(s string) (ASNumber, error) {
	if hi, lo, ok := strings.Cut(s, "."); ok {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("AS number %q: dotted form must be two numbers from 0 to 65535", s)
		}
		return ASNumber(h<<16 | l), nil
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("AS number %q must be a number from 0 to 4294967295", s)
	}
	return ASNumber(v), nil
}

// UnmarshalJSON accepts a number or a (possibly dotted) string.
func (a *ASNumber) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		v, err := ParseASNumber(n.String())
		if err != nil {
			return err
		}
		*a = v
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("AS number must be a number or a string, got %s", string(b))
	}
	v, err := ParseASNumber(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}
