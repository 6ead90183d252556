package record

// Secret says whether r redacts member k wherever it is in args.
func Secret(r *Recorder, k string) bool { return r.secret(k) }
