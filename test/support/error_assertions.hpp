#pragma once

#include "rollblock/messages/error.hpp"

#include <gtest/gtest.h>

/// Expects `expr` (a caf::error) to carry the rollblock error code `code`,
/// printing the whole error otherwise.
#define EXPECT_CODE(expr, code)                                                \
  do {                                                                         \
    auto err_ = (expr);                                                        \
    EXPECT_EQ(::rollblock::code_of(err_), code)                                \
      << ::rollblock::describe(err_);                                          \
  } while (false)

/// Asserts that `expr` (a caf::error) is no error, printing it otherwise.
#define ASSERT_OK(expr)                                                        \
  do {                                                                         \
    auto err_ = (expr);                                                        \
    ASSERT_FALSE(err_) << ::rollblock::describe(err_);                         \
  } while (false)
