package api

// Validate checks a defaulted object.
func Validate(obj Object) error { return nil }
