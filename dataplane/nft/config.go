package nft

import (
	"errors"
	"fmt"
	"time"
)

// Config configures a Dataplane. The zero value is usable: defaults fill in.
type Config struct {
	// TableName is our policy table's name (family inet). Default
	// "brindle". The classify table is TableName + "-classify".
	TableName string
	// PassMark is the packet-mark bit a policy chain sets to say "Pass"
	// (leave the tier) to the endpoint chain. It must be a single bit.
	// Default 0x02000000 (clear of kube-proxy's 0x4000/0x8000). It is
	// cleared again before the next tier.
	PassMark uint32
	// LogPrefix is the log prefix of rules with action Log. Default
	// "brindle-packet: ".
	LogPrefix string
	// NetNSFd, when non-zero, is an open file descriptor of the network
	// namespace to program; zero means the caller's namespace.
	NetNSFd int
	// SocketBuffer is the netlink socket send and receive buffer size in
	// bytes, large enough for one transaction's batch and its acks.
	// Default 64 MiB.
	SocketBuffer int
	// IndexMinPolicies is the number of policies a tier must apply to an
	// endpoint, in one direction, before that tier is reached through a
	// protocol and port index instead of a jump to each policy in turn
	// (see the package documentation). Default 8; 1 indexes every tier
	// (tests use it to exercise the index); negative disables indexing.
	IndexMinPolicies int
	// ClassMask is the packet-mark bits Brindle writes an endpoint's class
	// id into (see the package documentation): a contiguous run of bits,
	// not overlapping PassMark. It bounds the number of distinct classes
	// per direction to ClassMask>>shift (default 0x01ff0000: 511). The
	// class bits stay set on the packet after our chains (Calico's
	// iptablesMarkMask contract: these bits are the policy engine's).
	ClassMask uint32
	// RetainClasses is how many classes per direction no endpoint uses
	// are kept in the kernel (least recently used beyond that are deleted),
	// so that a label that flips back only changes the classify table.
	// A retained class is not free: the kernel walks its chain (and the
	// policies it jumps to) whenever it validates the policy table, which
	// every transaction that adds a rule does. Default 16; negative keeps
	// none.
	RetainClasses int
	// ClassMode chooses how a new class is programmed: ClassAuto (the
	// default) runs it through the generic chains, with set elements and
	// no new rule, so the kernel need not validate the policy table,
	// until Settle gives it a chain of its own (generic.go); ClassDirect
	// gives it its own chain at once.
	ClassMode ClassMode
	// SettleBatch is the most generic classes one Settle gives chains
	// of their own (the caller calls it again while Unsettled), so that
	// one settle transaction stays short. Default 32; negative: all.
	SettleBatch int
	// RetainPoliciesFor is how long a policy that left the state while
	// a generic chain jumps to it (no local endpoint selects it any
	// more, or it was deleted) keeps its chains and sets: if it comes
	// back meanwhile (a label flipping back, another pod of the same
	// kind), that costs no rule, so no validation of the policy table.
	// Settle releases the policies retained longer. A retained policy is
	// not free either: its chains are in every validation of the table,
	// and its sets are no longer updated (nothing uses them). Default
	// 60s; negative releases them at the next Settle.
	RetainPoliciesFor time.Duration
	// Now is the clock RetainPoliciesFor is measured with; default
	// time.Now (tests).
	Now func() time.Time
	// GenericFromStart lays the generic chains out in the first Apply
	// (not at the first Settle) and makes its classes generic too, so
	// that tests exercise the generic chains from the start.
	GenericFromStart bool
}

// Defaults for Config.
const (
	DefaultTableName    = "brindle"
	DefaultPassMark     = 0x02000000
	DefaultLogPrefix    = "brindle-packet: "
	DefaultSocketBuffer = 64 << 20
	// DefaultIndexMinPolicies is where a direct jump per policy starts
	// costing a new connection more than the index's two map lookups.
	DefaultIndexMinPolicies  = 8
	DefaultClassMask         = 0x01ff0000
	DefaultRetainClasses     = 16
	DefaultSettleBatch       = 32
	DefaultRetainPoliciesFor = time.Minute
)

// classifySuffix names the classify table: TableName + classifySuffix.
const classifySuffix = "-classify"

func (c Config) withDefaults() Config {
	if c.TableName == "" {
		c.TableName = DefaultTableName
	}
	if c.PassMark == 0 {
		c.PassMark = DefaultPassMark
	}
	if c.LogPrefix == "" {
		c.LogPrefix = DefaultLogPrefix
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = DefaultSocketBuffer
	}
	if c.IndexMinPolicies == 0 {
		c.IndexMinPolicies = DefaultIndexMinPolicies
	}
	if c.ClassMask == 0 {
		c.ClassMask = DefaultClassMask
	}
	if c.RetainClasses == 0 {
		c.RetainClasses = DefaultRetainClasses
	}
	if c.SettleBatch == 0 {
		c.SettleBatch = DefaultSettleBatch
	}
	if c.RetainPoliciesFor == 0 {
		c.RetainPoliciesFor = DefaultRetainPoliciesFor
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate checks a Config (after defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	single := func(v uint32) bool { return v != 0 && v&(v-1) == 0 }
	if !single(c.PassMark) {
		errs = append(errs, fmt.Errorf("PassMark %#x is not a single bit", c.PassMark))
	}
	if c.ClassMode > ClassDirect {
		errs = append(errs, fmt.Errorf("ClassMode %d is not ClassAuto or ClassDirect", c.ClassMode))
	}
	if max := 64 - len(classifySuffix); len(c.TableName) > max {
		errs = append(errs, fmt.Errorf("TableName %q is longer than %d bytes (%q is appended for the classify table)", c.TableName, max, classifySuffix))
	}
	if low := c.ClassMask & -c.ClassMask; c.ClassMask&(c.ClassMask+low) != 0 {
		errs = append(errs, fmt.Errorf("ClassMask %#08x is not a contiguous run of bits", c.ClassMask))
	}
	if c.ClassMask&c.PassMark != 0 {
		errs = append(errs, fmt.Errorf("ClassMask %#08x overlaps PassMark %#08x", c.ClassMask, c.PassMark))
	}
	if len(c.LogPrefix) > 127 {
		errs = append(errs, errors.New("LogPrefix is longer than 127 bytes"))
	}
	if c.SocketBuffer < 0 {
		errs = append(errs, fmt.Errorf("SocketBuffer %d is negative", c.SocketBuffer))
	}
	return errors.Join(errs...)
}
