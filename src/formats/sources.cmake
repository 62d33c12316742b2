# Sources of the formats library (no Vulkan): one line per file.
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/file.c)
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/safetensors.c)
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/ckpt_index.c)
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/ckpt_dir.c)
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/ckpt_reshard.c)
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/config.c)
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/config_keys.c)
target_sources(vkt_formats PRIVATE ${PROJECT_SOURCE_DIR}/src/formats/config_json.c)
