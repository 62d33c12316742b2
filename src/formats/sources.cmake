# Sources of the formats library (no Vulkan): one line per file.
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/file.c)
