package selector

// idSet is a set of small integer IDs (items or selectors) that stays a
// slice while small, which is the common case for every set the index
// keeps, and becomes a hash set when it grows.
type idSet struct {
	small []uint32
	big   map[uint32]struct{}
}

const idSetSmallMax = 16

func (s *idSet) len() int {
	if s.big != nil {
		return len(s.big)
	}
	return len(s.small)
}

func (s *idSet) has(id uint32) bool {
	if s.big != nil {
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
	if s.big != nil {
		if _, ok := s.big[id]; ok {
			return false
		}
		s.big[id] = struct{}{}
		return true
	}
	if s.has(id) {
		return false
	}
	if len(s.small) < idSetSmallMax {
		s.small = append(s.small, id)
		return true
	}
	s.big = make(map[uint32]struct{}, 2*idSetSmallMax)
	for _, x := range s.small {
		s.big[x] = struct{}{}
	}
	s.big[id] = struct{}{}
	s.small = nil
	return true
}

// remove removes id and reports whether it was present.
func (s *idSet) remove(id uint32) bool {
	if s.big != nil {
		if _, ok := s.big[id]; !ok {
			return false
		}
		delete(s.big, id)
		if len(s.big) < idSetSmallMax/2 {
			s.small = make([]uint32, 0, idSetSmallMax)
			for x := range s.big {
				s.small = append(s.small, x)
			}
			s.big = nil
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

// appendTo appends the IDs, in no particular order, to dst.
func (s *idSet) appendTo(dst []uint32) []uint32 {
	if s.big != nil {
		for x := range s.big {
			dst = append(dst, x)
		}
		return dst
	}
	return append(dst, s.small...)
}
