# Install rules and the CMake package, so that an outside project can do
#   find_package(mqpool CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE mqpool::mqpool)
# Headers are installed by each part's CMakeLists (install(DIRECTORY include/ ...)).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MQPOOL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mqpool)

install(TARGETS mqpool EXPORT mqpoolTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

install(EXPORT mqpoolTargets
  NAMESPACE mqpool::
  DESTINATION ${MQPOOL_CMAKE_DIR})

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/mqpoolConfig.cmake.in
  ${PROJECT_BINARY_DIR}/mqpoolConfig.cmake
  INSTALL_DESTINATION ${MQPOOL_CMAKE_DIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/mqpoolConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)  # 0.x: minor versions may break the API
install(FILES
  ${PROJECT_BINARY_DIR}/mqpoolConfig.cmake
  ${PROJECT_BINARY_DIR}/mqpoolConfigVersion.cmake
  DESTINATION ${MQPOOL_CMAKE_DIR})

# The `mqpool` command, when cli/ defines it; it finds libmqpool beside it after install.
if(TARGET mqpool_cli)
  set_target_properties(mqpool_cli PROPERTIES
    INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
  install(TARGETS mqpool_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
