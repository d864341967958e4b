package sandbox

// ResetInit makes jobs' inits run from the running binary again, undoing
// UseInitBinary for the tests that follow.
func ResetInit() { setInit(nil) }

// ResetReaper makes jobs' inits stay for their job's life again, undoing
// UseReaperBinary for the tests that follow.
func ResetReaper() { setReaper(nil) }
