module github.com/joblet-dev/joblet/deploy

go 1.26.0
