package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sender delivers google/nftables' write batches on a socket of our own.
//
// The library's Flush reads the kernel's acknowledgements one netlink
// receive (two syscalls and several allocations) per message, and asks
// the kernel to echo every new rule back, which dominates a
// 40,000-message transaction. A Conn built with
// nftables.WithTestDial(s.dial) hands us the marshalled batch instead: we
// clear the acknowledge and echo flags, send it in one sendmsg (the kernel
// processes and commits a batch synchronously inside it), then read
// whatever error messages it queued, and feed the library one synthetic
// success ack per message it waits for. The kernel's verdict is still
// all-or-nothing: a failed message aborts the whole transaction, and the
// first error is reported.
type sender struct {
	nl  *netlink.Conn
	buf []byte
	// err is the kernel's first error for the last batch, with the type of
	// the message that failed.
	err error
}

func newSender(netns, bufSize int) (*sender, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("dial netfilter netlink: %w", err)
	}
	if err := setBuffers(nl, bufSize); err != nil {
		nl.Close()
		return nil, err
	}
	return &sender{nl: nl, buf: make([]byte, 1<<16)}, nil
}

func (s *sender) close() error { return s.nl.Close() }

// setBuffers raises the socket buffers past rmem_max/wmem_max (we have
// CAP_NET_ADMIN) and asks for acks without the request echoed back.
func setBuffers(c *netlink.Conn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		for _, o := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, size); e != nil {
				serr = errors.Join(serr, e)
			}
		}
		if e := unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1); e != nil {
			serr = errors.Join(serr, e)
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set netlink socket options: %w", serr)
	}
	return nil
}

// okAck is what the library accepts as a successful acknowledgement.
var okAck = []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}}

// dial is the nltest.Func behind the writing Conn.
func (s *sender) dial(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		// The library waits for one ack per message: the batch has been
		// delivered and succeeded, so each wait gets a success.
		return okAck, nil
	}
	s.err = nil
	if err := s.send(req); err != nil {
		s.err = err
		// A syscall error is returned once by the test socket and then
		// cleared, so the library's remaining waits see successes and its
		// Flush reports one error (ours, with detail, is in s.err).
		var errno unix.Errno
		if !errors.As(err, &errno) {
			errno = unix.EIO
		}
		return nil, errno
	}
	return nil, nil
}

func (s *sender) send(req []netlink.Message) error {
	types := make(map[uint32]netlink.HeaderType, len(req))
	for _, m := range req {
		types[m.Header.Sequence] = m.Header.Type
	}
	raw, err := s.nl.SyscallConn()
	if err != nil {
		return err
	}
	// Anything queued from an earlier batch is stale.
	if _, err := s.drain(raw, nil); err != nil {
		return err
	}
	// Marshal the whole batch into one buffer and send it with one
	// sendmsg (the netlink library would copy it several times).
	buf := marshalBatch(req)
	var serr error
	if err := raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN && serr != unix.EINTR
	}); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("send batch of %d messages (%d bytes): %w", len(req), len(buf), serr)
	}
	// The kernel processes a netlink batch synchronously inside sendmsg:
	// by now it has committed or aborted it, and queued an error message
	// for every message that failed (and for a failed commit). Without
	// NLM_F_ACK nothing is queued on success.
	var first error
	first0 := req[0].Header.Sequence
	_, err = s.drain(raw, func(a ack) {
		if a.errno != 0 && first == nil {
			first = fmt.Errorf("kernel rejected %s (message %d of the batch): %w",
				msgTypeName(types[a.seq]), a.seq-first0, a.errno)
		}
	})
	if err != nil {
		return err
	}
	return first
}

// drain reads every message queued on the socket without waiting, passing
// each error message to f (when not nil), and returns how many it saw.
func (s *sender) drain(raw syscall.RawConn, f func(ack)) (int, error) {
	n := 0
	for {
		var rerr error
		var got int
		if err := raw.Control(func(fd uintptr) {
			got, _, rerr = unix.Recvfrom(int(fd), s.buf, unix.MSG_DONTWAIT)
		}); err != nil {
			return n, err
		}
		if rerr == unix.EINTR {
			continue
		}
		if rerr == unix.EAGAIN {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("read acks: %w", rerr)
		}
		msgs, err := parseAcks(s.buf[:got])
		if err != nil {
			return n, fmt.Errorf("read acks: %w", err)
		}
		for _, a := range msgs {
			n++
			if f != nil {
				f(a)
			}
		}
	}
}

type ack struct {
	seq   uint32
	errno unix.Errno
}

// parseAcks reads NLMSG_ERROR messages (acks carry errno 0) from one
// datagram.
func parseAcks(b []byte) ([]ack, error) {
	var out []ack
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return nil, fmt.Errorf("bad netlink message length %d", l)
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		if typ == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4+unix.NLMSG_HDRLEN {
			code := int32(binary.NativeEndian.Uint32(b[16:20]))
			// The echoed request header follows the error code.
			seq := binary.NativeEndian.Uint32(b[20+8 : 20+12])
			out = append(out, ack{seq: seq, errno: unix.Errno(-code)})
		}
		adv := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if adv > len(b) {
			break
		}
		b = b[adv:]
	}
	return out, nil
}

func msgTypeName(t netlink.HeaderType) string {
	names := map[int]string{
		unix.NFT_MSG_NEWTABLE: "new table", unix.NFT_MSG_DELTABLE: "delete table",
		unix.NFT_MSG_NEWCHAIN: "new chain", unix.NFT_MSG_DELCHAIN: "delete chain",
		unix.NFT_MSG_NEWRULE: "new rule", unix.NFT_MSG_DELRULE: "delete rule",
		unix.NFT_MSG_NEWSET: "new set", unix.NFT_MSG_DELSET: "delete set",
		unix.NFT_MSG_NEWSETELEM: "new set elements", unix.NFT_MSG_DELSETELEM: "delete set elements",
	}
	if n, ok := names[int(t)&0xff]; ok {
		return n
	}
	return fmt.Sprintf("message type %#x", int(t))
}

// ruleInfo is what a rule dump keeps of each rule.
type ruleInfo struct {
	chain    string
	userdata []byte
}

// dumpRules lists every rule of a table in one netlink dump, decoding only
// each rule's chain and userdata (the library's GetRules needs one dump per
// chain and decodes every expression).
func (s *sender) dumpRules(t *nftables.Table) ([]ruleInfo, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(t.Name), 0)},
	})
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{byte(t.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	msgs, err := s.nl.Execute(req)
	if err != nil {
		return nil, err
	}
	out := make([]ruleInfo, 0, len(msgs))
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, err
		}
		var r ruleInfo
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_CHAIN:
				r.chain = ad.String()
			case unix.NFTA_RULE_USERDATA:
				r.userdata = ad.Bytes()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// marshalBatch encodes netlink messages back to back, each padded to the
// netlink alignment, with the acknowledge and echo flags cleared.
func marshalBatch(msgs []netlink.Message) []byte {
	align := func(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
	size := 0
	for _, m := range msgs {
		size += align(unix.NLMSG_HDRLEN + len(m.Data))
	}
	buf := make([]byte, size)
	off := 0
	for _, m := range msgs {
		l := unix.NLMSG_HDRLEN + len(m.Data)
		binary.NativeEndian.PutUint32(buf[off:], uint32(l))
		binary.NativeEndian.PutUint16(buf[off+4:], uint16(m.Header.Type))
		// No acks or echoes: errors are reported without them (see send),
		// and echoing every new rule back costs the kernel a full rule
		// dump each.
		flags := m.Header.Flags &^ (netlink.Acknowledge | netlink.Echo)
		binary.NativeEndian.PutUint16(buf[off+6:], uint16(flags))
		binary.NativeEndian.PutUint32(buf[off+8:], m.Header.Sequence)
		binary.NativeEndian.PutUint32(buf[off+12:], m.Header.PID)
		copy(buf[off+unix.NLMSG_HDRLEN:], m.Data)
		off += align(l)
	}
	return buf
}
