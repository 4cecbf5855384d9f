-- The sample e-commerce source schema (MySQL 8 and MariaDB).
CREATE TABLE users (
  id            INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email         VARCHAR(191) NOT NULL,
  username      VARCHAR(64)  NOT NULL,
  password_hash CHAR(64)     NOT NULL,
  first_name    VARCHAR(100) NULL,
  last_name     VARCHAR(100) NULL,
  is_seller     TINYINT(1)   NOT NULL DEFAULT 0,
  status        ENUM('active','suspended','closed') NOT NULL DEFAULT 'active',
  preferences   JSON         NULL,
  bio           TEXT         NULL,
  created_at    TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at    DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_users_email (email),
  KEY ix_users_updated_at (updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE categories (
  id          INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name        VARCHAR(100) NOT NULL,
  parent_id   INT UNSIGNED NULL,
  created_at  TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY ix_categories_parent (parent_id),
  KEY ix_categories_updated_at (updated_at),
  CONSTRAINT fk_categories_parent FOREIGN KEY (parent_id) REFERENCES categories (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE products (
  id                 INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  seller_id          INT UNSIGNED NULL,
  category_id        INT UNSIGNED NOT NULL,
  sku                VARCHAR(32)  NOT NULL,
  name               VARCHAR(200) NOT NULL,
  description        LONGTEXT     NULL,
  price              DECIMAL(10,2) NOT NULL,
  weight_kg          DECIMAL(12,4) NULL,
  lifetime_value     DECIMAL(65,10) NULL,
  inventory_quantity INT          NOT NULL DEFAULT 0,
  attributes         JSON         NULL,
  image_url          VARCHAR(500) NULL,
  created_at         TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at         DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY ix_products_seller (seller_id),
  KEY ix_products_category (category_id),
  KEY ix_products_updated_at (updated_at),
  CONSTRAINT fk_products_seller FOREIGN KEY (seller_id) REFERENCES users (id),
  CONSTRAINT fk_products_category FOREIGN KEY (category_id) REFERENCES categories (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE shopping_carts (
  id          INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id     INT UNSIGNED NOT NULL,
  product_id  INT UNSIGNED NOT NULL,
  quantity    INT          NOT NULL,
  added_at    TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY ix_carts_user (user_id),
  KEY ix_carts_product (product_id),
  KEY ix_carts_updated_at (updated_at),
  CONSTRAINT fk_carts_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT fk_carts_product FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE orders (
  id               INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id          INT UNSIGNED NOT NULL,
  status           ENUM('pending','paid','shipped','delivered','cancelled') NOT NULL,
  total_amount     DECIMAL(12,2) NOT NULL,
  shipping_address JSON          NULL,
  created_at       TIMESTAMP     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at       DATETIME(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY ix_orders_user (user_id),
  KEY ix_orders_updated_at (updated_at),
  CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE order_items (
  id          INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_id    INT UNSIGNED NOT NULL,
  product_id  INT UNSIGNED NOT NULL,
  quantity    INT          NOT NULL,
  unit_price  DECIMAL(10,2) NOT NULL,
  KEY ix_items_order (order_id),
  KEY ix_items_product (product_id),
  CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id),
  CONSTRAINT fk_items_product FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
