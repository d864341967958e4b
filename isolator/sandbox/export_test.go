package sandbox

// ResetInit makes jobs' inits run from the running binary again, undoing
// UseInitBinary for the tests that follow.
func ResetInit() { setInit(nil) }
