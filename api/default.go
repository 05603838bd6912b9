package api

// Default fills in Calico's defaults on obj, in place.
func Default(obj Object) {}
