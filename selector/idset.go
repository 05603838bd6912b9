package selector

import "math/bits"

// idSet is a set of small integer IDs (items or selectors) in one of three
// forms, chosen by size and density:
//
//   - a slice while small (at most idSetSmallMax IDs), the common case for
//     most sets the index keeps;
//   - a hash set while large but sparse;
//   - a bitmap over 0..max once the set holds at least one ID in
//     idSetDenseRatio of that range. Item IDs are dense (freed numbers are
//     reused), so a label that many items carry, such as a namespace of
//     thousands of pods or a key every pod has, ends up here: an insert is
//     a bit set instead of a hash-table probe, and 100,000 items take
//     12.5 KB instead of about a megabyte of table.
//
// Each insert and remove is a single probe of whichever form is in use.
type idSet struct {
	small []uint32
	big   map[uint32]struct{}
	dense []uint64 // bitmap; non-nil in the dense form
	n     int      // number of IDs in the big and dense forms
	max   uint32   // upper bound of the IDs in the big form
}

const (
	idSetSmallMax = 16
	// idSetDenseRatio: a hash set becomes a bitmap when it holds at least
	// one ID in this many of 0..max (a bitmap then costs about as much
	// memory as the table), and a bitmap goes back to a hash set when it
	// falls to a quarter of that density.
	idSetDenseRatio = 64
)

func (s *idSet) len() int {
	if s.big != nil || s.dense != nil {
		return s.n
	}
	return len(s.small)
}

func (s *idSet) has(id uint32) bool {
	switch {
	case s.dense != nil:
		w := int(id / 64)
		return w < len(s.dense) && s.dense[w]&(1<<(id%64)) != 0
	case s.big != nil:
		_, ok := s.big[id]
		return ok
	}
	for _, x := range s.small {
		if x == id {
			return true
		}
	}
	return false
}

// add adds id and reports whether it was absent.
func (s *idSet) add(id uint32) bool {
	switch {
	case s.dense != nil:
		w := int(id / 64)
		if w >= len(s.dense) {
			if (w+1)*64 > s.n*idSetDenseRatio*4 {
				// Far beyond the bitmap: too sparse for it.
				s.toBig()
				return s.addBig(id)
			}
			s.dense = append(s.dense, make([]uint64, w+1-len(s.dense))...)
		}
		b := uint64(1) << (id % 64)
		if s.dense[w]&b != 0 {
			return false
		}
		s.dense[w] |= b
		s.n++
		return true
	case s.big != nil:
		return s.addBig(id)
	}
	for _, x := range s.small {
		if x == id {
			return false
		}
	}
	if len(s.small) < idSetSmallMax {
		s.small = append(s.small, id)
		return true
	}
	s.big = make(map[uint32]struct{}, 2*idSetSmallMax)
	for _, x := range s.small {
		s.big[x] = struct{}{}
		s.max = max(s.max, x)
	}
	s.n = len(s.small)
	s.small = nil
	return s.addBig(id)
}

func (s *idSet) addBig(id uint32) bool {
	s.big[id] = struct{}{}
	if len(s.big) == s.n {
		return false
	}
	s.n++
	s.max = max(s.max, id)
	if uint64(s.n)*idSetDenseRatio > uint64(s.max) {
		s.toDense()
	}
	return true
}

func (s *idSet) toDense() {
	s.dense = make([]uint64, s.max/64+1)
	for x := range s.big {
		s.dense[x/64] |= 1 << (x % 64)
	}
	s.big = nil
}

func (s *idSet) toBig() {
	s.big = make(map[uint32]struct{}, s.n)
	s.max = 0
	for x := range s.each {
		s.big[x] = struct{}{}
		s.max = x
	}
	s.dense = nil
}

// remove removes id and reports whether it was present.
func (s *idSet) remove(id uint32) bool {
	switch {
	case s.dense != nil:
		w := int(id / 64)
		b := uint64(1) << (id % 64)
		if w >= len(s.dense) || s.dense[w]&b == 0 {
			return false
		}
		s.dense[w] &^= b
		s.n--
		switch {
		case s.n <= idSetSmallMax/2:
			s.toSmall()
		case len(s.dense)*64 > s.n*idSetDenseRatio*4:
			s.toBig()
		}
		return true
	case s.big != nil:
		delete(s.big, id)
		if len(s.big) == s.n {
			return false
		}
		s.n--
		if s.n < idSetSmallMax/2 {
			s.toSmall()
		}
		return true
	}
	for i, x := range s.small {
		if x == id {
			last := len(s.small) - 1
			s.small[i] = s.small[last]
			s.small = s.small[:last]
			if last == 0 {
				s.small = nil
			}
			return true
		}
	}
	return false
}

func (s *idSet) toSmall() {
	small := make([]uint32, 0, idSetSmallMax)
	for x := range s.each {
		small = append(small, x)
	}
	*s = idSet{small: small}
}

// each calls yield for every ID, in no particular order (ascending in the
// dense form); it is an iter.Seq[uint32]. The set must not change while
// it runs.
func (s *idSet) each(yield func(uint32) bool) {
	switch {
	case s.dense != nil:
		for w, word := range s.dense {
			for word != 0 {
				if !yield(uint32(w*64 + bits.TrailingZeros64(word))) {
					return
				}
				word &= word - 1
			}
		}
	case s.big != nil:
		for x := range s.big {
			if !yield(x) {
				return
			}
		}
	default:
		for _, x := range s.small {
			if !yield(x) {
				return
			}
		}
	}
}

// appendTo appends the IDs, in no particular order, to dst.
func (s *idSet) appendTo(dst []uint32) []uint32 {
	for x := range s.each {
		dst = append(dst, x)
	}
	return dst
}
