# Sources of the op library, one line per file (appending a line never
# conflicts with another engineer's line).
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/ops.c)
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/optim.c)
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/matmul.c)
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/layernorm.c)
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/attention.c)
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/elementwise.c)
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/dropout.c)
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/xent.c)
target_sources(vkt_ops PRIVATE ${PROJECT_SOURCE_DIR}/src/ops/embed.c)
