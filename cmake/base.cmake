# The flags every target shares (vkt_flags) and the core library (status,
# errors, allocation, environment, dtypes: vkt_core). Included by the
# top-level CMakeLists.txt and by the standalone transport build, so both
# compile with the same flags. Needs VKT_ROOT (the source root), VKT_WERROR
# and VKT_SANITIZE.
add_library(vkt_flags INTERFACE)
# The prototype warnings exist for C only (g++ rejects them under -Werror).
target_compile_options(vkt_flags INTERFACE -Wall -Wextra -Wshadow -Wno-unused-parameter
                       $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes -Wmissing-prototypes>
                       -Wno-format-truncation) # messages are cut on purpose
target_compile_definitions(vkt_flags INTERFACE _GNU_SOURCE)
target_link_libraries(vkt_flags INTERFACE m)
if(VKT_WERROR)
  target_compile_options(vkt_flags INTERFACE -Werror)
endif()
if(VKT_SANITIZE)
  target_compile_options(vkt_flags INTERFACE -fsanitize=address,undefined
                         -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(vkt_flags INTERFACE -fsanitize=address,undefined)
endif()
target_include_directories(vkt_flags INTERFACE ${VKT_ROOT}/include ${VKT_ROOT}/src)

find_package(Threads REQUIRED)
add_library(vkt_core OBJECT ${VKT_ROOT}/src/core/status.c ${VKT_ROOT}/src/core/alloc.c
            ${VKT_ROOT}/src/core/env.c ${VKT_ROOT}/src/core/dtype.c ${VKT_ROOT}/src/core/fault.c)
target_link_libraries(vkt_core PUBLIC vkt_flags Threads::Threads)
target_compile_definitions(vkt_core PRIVATE VKT_BUILDING_LIBRARY)
