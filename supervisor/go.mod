module github.com/joblet-dev/joblet/supervisor

go 1.26.0

require github.com/joblet-dev/joblet/proto v0.0.0

replace github.com/joblet-dev/joblet/proto => ../proto
replace github.com/joblet-dev/joblet/deploy => ../deploy
