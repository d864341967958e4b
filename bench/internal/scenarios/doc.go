// Package scenarios holds the measurements of the benchmark: each function
// runs one scenario against a running suite (or a baseline without it) and
// returns raw samples; the app turns them into table rows.
package scenarios
