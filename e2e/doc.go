// Package e2e holds the end-to-end tests of the Joblet suite: they start the
// real supervisor (bin/joblet) once, in a temporary dev directory, and drive
// it through the real bin/rnx exactly as a user would. All the code lives in
// _test.go files; this file only names the package.
package e2e
