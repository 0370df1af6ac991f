{
  "targets": [{
    "target_name": "fastpath",
    "sources": ["fastpath.c", "relay.c", "binding.c"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
  }]
}
