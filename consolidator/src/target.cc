#include "target.h"

namespace sidelog::consolidator {

std::unique_ptr<Target> Target::FromConfig(const ConsolidatorConfig& config) {
  if (config.postgres) return NewPostgresTarget(*config.postgres);
  return NewSqliteTarget(*config.sqlite);
}

}  // namespace sidelog::consolidator
