module cannedserver

go 1.22
