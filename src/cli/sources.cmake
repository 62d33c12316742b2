# Sources of the vktrain command: one line per file.
target_sources(vktrain_cli PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/main.c)
target_sources(vktrain_cli PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/cli_util.c)
target_sources(vktrain_cli PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/cmd_info.c)
target_sources(vktrain_cli PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/cmd_selftest.c)
target_sources(vktrain_cli PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/cmd_bench.c)
target_sources(vktrain_cli PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/bench_ops.c)
